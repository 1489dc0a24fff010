/* Task kind "distill" (Hinton, Vinyals, Dean 2015): trains a fresh student
 * (settings "model") on the soft targets of the parents: one teacher, or an
 * ensemble whose logits are averaged. Settings: the training keys of
 * docs/training.md and the table below. */
#include "raffle/distill.h"
#include "raffle/plan.h"
#include "raffle/data.h"
#include "task/task_keys.h"

#include <stdio.h>
#include <string.h>

/* Hinton et al. 2015 §2: "the best results were generally obtained by using
 * a considerably lower weight on the second objective function" (the hard
 * labels), hence alpha 0.9 on the soft targets; T = 4 is the middle of the
 * range their MNIST runs found good. */
#define KEY_TEMPERATURE(grid) {.key = "temperature", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1000, .lo_open = 1, \
    .def = "4", .doc = "softmax temperature T (Hinton et al. 2015; their MNIST run: 20)"}
#define KEY_ALPHA(grid) {.key = "alpha", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .def = "0.9", \
    .doc = "weight of the T²-scaled soft loss; 1 − alpha on the hard labels"}

static const char *const init_values[] = {"parent", NULL};
static const rf_setting distill_keys[] = {
    KEY_TEMPERATURE(0),
    KEY_ALPHA(0),
    {.key = "hidden", .type = RF_SET_BOOL, .flags = RF_SF_OPTIONAL, .def = "false",
     .doc = "also distill transformer block outputs (MSE through a learned projection)"},
    {.key = "hidden_weight", .type = RF_SET_NUM, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 1e6, .def = "1",
     .doc = "weight β of the hidden-state term"},
    {.key = "proj_lr", .type = RF_SET_NUM, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 10, .def = "0.001",
     .doc = "Adam learning rate of the hidden-state projections"},
    RF_KEY_TEACHER_CACHE,
    {.key = "init", .type = RF_SET_ENUM, .flags = RF_SF_OPTIONAL | RF_SF_NOCLI, .choices = init_values,
     .doc = "\"parent\": the student is the last parent's model (weights and mask kept; a pipeline stage), not a fresh `model`"},
    {.key = "teacher_ckpt", .type = RF_SET_FILE, .flags = RF_SF_OPTIONAL | RF_SF_NOCLI,
     .doc = "a teacher checkpoint to distill from besides the parents (a file, or URL#sha256=HEX fetched into the download cache)"},
    RF_SETTINGS_END
};

rf_status rf_task_distill_cfg(rf_ctx *ctx, const cJSON *settings, const rf_setting *tab, rf_distill_cfg *cfg) {
    static const char *const keys[] = {"temperature", "alpha", "hidden_weight", "proj_lr"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const rf_setting *k = rf_setting_find(tab, keys[i]);
        const cJSON *v = settings ? cJSON_GetObjectItemCaseSensitive(settings, keys[i]) : NULL;
        if (k && v && rf_setting_check(ctx, k, v, "settings", 0) != RF_OK) return ctx->status = RF_ERR_INVALID;
    }
    rf_distill_cfg_default(cfg);
    cfg->T = (float)rf_settings_num(settings, tab, "temperature");
    cfg->alpha = (float)rf_settings_num(settings, tab, "alpha");
    cfg->hidden_weight = (float)rf_settings_num(settings, distill_keys, "hidden_weight");
    cfg->proj_lr = (float)rf_settings_num(settings, distill_keys, "proj_lr");
    cfg->seed = (uint64_t)rf_settings_num(settings, rf_task_common_settings, "seed");
    return RF_OK;
}

rf_status rf_distill_cfg_from_json(rf_ctx *ctx, const cJSON *settings, rf_distill_cfg *cfg) {
    return rf_task_distill_cfg(ctx, settings, distill_keys, cfg);
}

/* Accuracy of the teacher ensemble (argmax of the mean logits) on ds: the
 * test split, reported as teacher_test_accuracy (nothing selects on it). */
static rf_status ensemble_accuracy(rf_ctx *ctx, rf_teacher *t, const rf_dataset *test, double *acc) {
    *acc = -1.0;
    if (!test || test->n == 0) return RF_OK;
    const int K = rf_teacher_classes(t);
    float *sum = rf_calloc((size_t)test->n * K, sizeof(float));
    if (!sum) return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory");
    rf_status s = RF_OK;
    for (int i = 0; i < rf_teacher_size(t) && s == RF_OK; i++) {
        float *lg = NULL;
        s = rf_predict(ctx, rf_teacher_model(t, i), test, 256, &lg);
        for (int64_t k = 0; s == RF_OK && k < test->n * K; k++) sum[k] += lg[k];
        rf_free(lg);
    }
    int64_t right = 0;
    for (int64_t n = 0; s == RF_OK && n < test->n; n++) {
        const float *r = sum + n * K;
        int best = 0;
        for (int k = 1; k < K; k++) if (r[k] > r[best]) best = k;
        right += best == test->y[n];
    }
    rf_free(sum);
    if (s == RF_OK) *acc = (double)right / (double)test->n;
    return s;
}

rf_status rf_task_distill(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "distill: no training data");
    RF_TRY(rf_kind_check(ctx, &rf_kind_distill, io->settings, "settings"));
    const cJSON *iv = cJSON_GetObjectItemCaseSensitive(io->settings, "init");
    /* init "parent": the last parent is the student (a pruned model keeps
     * its mask through training: rf_train re-applies it after each step) */
    const int from_parent = cJSON_IsString(iv) && strcmp(iv->valuestring, "parent") == 0;
    /* the teachers: the parents' checkpoints (but the student's), then
     * teacher_ckpt (a file or a pinned URL's cached copy: issue 19) */
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(io->settings, "teacher_ckpt");
    char tpath[4096];
    const char *teachers[17];
    int nt = 0;
    for (int i = 0; i < io->n_parents - from_parent && nt < 16; i++) teachers[nt++] = io->parent_ckpts[i];
    if (cJSON_IsString(tc)) {
        const char *f = tc->valuestring;
        if (rf_data_is_pinned(f, strlen(f))) RF_TRY(rf_data_pinned_path(ctx, f, strlen(f), tpath, sizeof tpath));
        else snprintf(tpath, sizeof tpath, "%s", f);
        teachers[nt++] = tpath;
    }
    if (nt < 1) return rf_error(ctx, RF_ERR_INVALID, "distill: needs a teacher: a parent checkpoint or teacher_ckpt");
    if (from_parent && io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "distill: init \"parent\" needs the student as the last parent");
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(io->settings, "model");
    if (!from_parent && !cJSON_IsString(mv)) return rf_error(ctx, RF_ERR_INVALID, "distill: settings have no \"model\" (the student)");
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg_io(ctx, io, 100, &cfg));
    rf_distill_cfg dc;
    RF_TRY(rf_task_distill_cfg(ctx, io->settings, distill_keys, &dc));
    const int hidden = rf_settings_bool(io->settings, distill_keys, "hidden");
    const int cache = rf_settings_bool(io->settings, distill_keys, "teacher_cache");

    rf_teacher *t = NULL;
    rf_model *m = NULL;
    rf_distill *d = NULL;
    char *extra = NULL;
    double teacher_acc = -1.0;
    rf_train_result r;
    memset(&r, 0, sizeof r);
    rf_train_curve curve = {0};
    cfg.curve = &curve;
    rf_status s = rf_teacher_load(ctx, teachers, nt, &t);
    if (s == RF_OK && from_parent) s = rf_task_open_model(ctx, "distill", io->parent_ckpts[io->n_parents - 1], io->settings, io->train, cfg.seed, &m);
    if (s == RF_OK && !from_parent) s = rf_model_create_for_data(ctx, mv->valuestring, io->train, &m);
    if (s == RF_OK && !from_parent) s = rf_model_init(ctx, m, cfg.seed);
    if (s == RF_OK && hidden) s = rf_distill_pairs_default(ctx, m, rf_teacher_model(t, 0), &dc);
    /* Hidden-state pairs run the teacher on every batch anyway; without them
     * the cached logits replace every teacher forward of the run. */
    if (s == RF_OK && cache && !hidden) s = rf_teacher_cache(ctx, t, io->train, 256);
    if (s == RF_OK) s = ensemble_accuracy(ctx, t, io->test, &teacher_acc);
    if (s == RF_OK) s = rf_distill_new(ctx, t, m, &dc, &d);
    if (s == RF_OK) {
        rf_train_hooks h;
        memset(&h, 0, sizeof h);
        rf_distill_hooks(d, &h);
        s = rf_train(ctx, m, io->train, io->val, io->test, &cfg, NULL, &h, &r);
        if (s == RF_OK && r.stopped)
            s = rf_error(ctx, RF_ERR_PREEMPTED, "distill: stopped on request after %lld steps", (long long)r.steps);
    }
    if (d) { rf_distill_free(d, m); d = NULL; }
    if (s == RF_OK) s = rf_task_ckpt_extra(ctx, "distill", io, nt, r.steps, &extra);
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddNumberToObject(metrics, "teacher_test_accuracy", teacher_acc) ||
            !cJSON_AddNumberToObject(metrics, "teachers", nt) ||
            !cJSON_AddNumberToObject(metrics, "temperature", dc.T) ||
            !cJSON_AddNumberToObject(metrics, "alpha", dc.alpha) ||
            !cJSON_AddNumberToObject(metrics, "hidden_pairs", dc.n_pairs) ||
            !rf_task_add_selection(&r, metrics) || !rf_task_add_curve(metrics, &curve) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "distill: metrics");
    }
    cJSON_free(extra);
    rf_free(curve.v);
    rf_model_free(m);
    rf_teacher_free(t);
    return s;
}

/* ---- the experiment -------------------------------------------------------------
 * DAG: teacher train -> distill student; with baseline, also the student
 * model trained alone (same settings, no teacher). */
/* teacher.from: the teacher tasks of grid point pt among the selected
 * pt->teachers (the job resolved `from`, `where`, `best`). One teacher: the
 * selection's only model, else the one with the student's seed (a per-seed
 * dense experiment pairs teacher and student seeds, as teacher.model
 * does); an ensemble of N: the selection, which must be N models. */
static int pick_teachers(rf_plan *p, const rf_point *pt, int n_t, int32_t *par, int max) {
    rf_ctx *ctx = rf_plan_ctx(p);
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pt->x, "teacher"), "from");
    const char *src = cJSON_IsString(tf) ? tf->valuestring : "the experiments named";
    if (pt->n_teachers == 0) {
        rf_error(ctx, RF_ERR_JOB, "teacher.from: \"%s\" with its where/best selects no model", src);
        return -1;
    }
    if (n_t > 1) {
        if (pt->n_teachers != n_t || n_t > max) {
            rf_error(ctx, RF_ERR_JOB, "teacher.from: an ensemble of %d teachers (teachers) needs a selection of %d models; "
                     "\"%s\" with its where/best selects %d", n_t, n_t, src, pt->n_teachers);
            return -1;
        }
        for (int k = 0; k < n_t; k++) par[k] = pt->teachers[k];
        return n_t;
    }
    if (pt->n_teachers == 1) { par[0] = pt->teachers[0]; return 1; }
    int hit = -1, n_hit = 0;
    for (int k = 0; k < pt->n_teachers; k++) {
        cJSON *ts = cJSON_Parse(rf_plan_task_settings(p, pt->teachers[k]));
        if (!ts) return rf_plan_nomem(p, NULL);
        if (rf_plan_num(ts, "seed") == pt->seed) { hit = k; n_hit++; }
        cJSON_Delete(ts);
    }
    if (n_hit != 1) {
        rf_error(ctx, RF_ERR_JOB, "teacher.from: \"%s\" selects %d models and %d of them %s the student's seed %.0f: "
                 "narrow it to one with teacher.where or teacher.best (or set teachers to %d for an ensemble)",
                 src, pt->n_teachers, n_hit, n_hit == 1 ? "has" : "have", pt->seed, pt->n_teachers);
        return -1;
    }
    par[0] = pt->teachers[hit];
    return 1;
}

static int expand_distill(rf_plan *p, const rf_point *pt) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(pt->x, "teacher");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(t, "model"), *tck = cJSON_GetObjectItemCaseSensitive(t, "checkpoint"),
                *tu = cJSON_GetObjectItemCaseSensitive(t, "url"), *th = cJSON_GetObjectItemCaseSensitive(t, "sha256");
    const int tfrom = pt->n_teachers >= 0;
    if (!!tm + !!tck + !!tu + tfrom != 1 || !tu != !th) {
        rf_error(rf_plan_ctx(p), RF_ERR_JOB, "teacher: give one of \"model\" (trained here), \"from\" (an earlier experiment's "
                 "model), \"checkpoint\" (a file) or \"url\" with \"sha256\"");
        return -1;
    }
    if (tfrom && cJSON_GetObjectItemCaseSensitive(t, "train")) {
        rf_error(rf_plan_ctx(p), RF_ERR_JOB, "teacher.train: only with teacher.model (a teacher from an earlier experiment is already trained)");
        return -1;
    }
    /* a teacher trained here may be an ensemble: trained from seeds seed,
     * seed + 1, ... (Hinton et al. 2015 §3 average the ensemble's logits);
     * parents in seed order, then the student when the stage starts from
     * an earlier experiment ("from") */
    enum { MAX_TEACHERS = 15 };
    int n_t = tm || tfrom ? (int)rf_plan_num(pt->x, "teachers") : 0, np = 0;
    int32_t par[MAX_TEACHERS + 1];
    char ck[4096] = "";
    if (tfrom) {
        if ((np = pick_teachers(p, pt, n_t, par, MAX_TEACHERS)) < 0) return -1;
    } else if (tm) {
        cJSON *ttrain = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(t, "train"));
        if (!ttrain) return rf_plan_nomem(p, NULL);
        for (int k = 0; k < n_t && k < MAX_TEACHERS; k++) {
            rf_point tp = *pt;
            tp.seed = pt->seed + k;
            if ((par[np++] = rf_plan_dense(p, &tp, pt->data, tm, ttrain)) < 0) { cJSON_Delete(ttrain); return -1; }
        }
        cJSON_Delete(ttrain);
    } else if (tck) {
        snprintf(ck, sizeof ck, "%s", tck->valuestring);
    } else if (snprintf(ck, sizeof ck, "%s#sha256=%s", tu->valuestring, th->valuestring) >= (int)sizeof ck) {
        rf_error(rf_plan_ctx(p), RF_ERR_JOB, "teacher.url: too long");
        return -1;
    }
    cJSON *s = rf_plan_settings(pt, pt->data, pt->model, pt->train);
    static const char *const keys[] = {"temperature", "alpha", "hidden", "hidden_weight", NULL};
    if (!s || !rf_plan_copy_keys(s, pt->x, keys) || (ck[0] && !cJSON_AddStringToObject(s, "teacher_ckpt", ck)))
        return rf_plan_nomem(p, s);
    /* defaults stay out of the settings, so ids published before these keys hold */
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "hidden"))) {
        cJSON_DeleteItemFromObjectCaseSensitive(s, "hidden");
        cJSON_DeleteItemFromObjectCaseSensitive(s, "hidden_weight");
    }
    if (pt->from >= 0) {
        if (!cJSON_AddStringToObject(s, "init", "parent")) return rf_plan_nomem(p, s);
        par[np++] = pt->from;
    }
    /* distillation runs the teacher forward on every batch as well */
    double cost = rf_plan_train_cost(pt->train, pt->data, pt->model) * (1.0 + 0.5 * (n_t > 0 ? n_t : 1));
    if (rf_plan_add(p, RF_JOB_DISTILL, s, np ? par : NULL, np, cost) < 0) return -1;
    if (pt->from < 0 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pt->x, "baseline")) &&
        rf_plan_dense(p, pt, pt->data, pt->model, pt->train) < 0)
        return -1;
    return 0;
}

static const rf_setting teacher_keys[] = {
    {.key = "model", .type = RF_SET_MODEL, .flags = RF_SF_GRID, .doc = "the teacher's model, trained here (or `checkpoint`, or `url`)"},
    {.key = "train", .type = RF_SET_OBJ, .sub = rf_train_settings, .doc = "over the experiment's `train`"},
    {.key = "checkpoint", .type = RF_SET_FILE, .flags = RF_SF_GRID, .doc = "a trained teacher's checkpoint (its content is part of the task ids)"},
    {.key = "url", .type = RF_SET_STR, .doc = "a trained teacher's checkpoint by URL, fetched once per node into the download cache"},
    {.key = "sha256", .type = RF_SET_STR, .doc = "the SHA-256 `url`'s file must have (64 lowercase hex digits)"},
    {.key = "from", .type = RF_SET_STR, .flags = RF_SF_LISTVAL,
     .doc = "the teacher is a model of the earlier experiment of this name (or a list of names): the selection's only "
            "model, else the one with the student's seed; with `teachers: N`, the N models selected (an ensemble)"},
    {.key = "where", .type = RF_SET_WHERE, .doc = "with `from`: keep only the models whose settings match (as a stage's `where`)"},
    {.key = "best", .type = RF_SET_OBJ, .sub = rf_best_settings,
     .doc = "with `from`: the best model of each group by a validation metric (as a stage's `best`; waits for them to finish)"},
    RF_SETTINGS_END
};
static const rf_setting distill_exp_keys[] = {
    {.key = "teacher", .type = RF_SET_OBJ, .flags = RF_SF_REQUIRED, .sub = teacher_keys,
     .doc = "`{\"model\": ..., \"train\": {...}}`: the teacher, trained with the experiment's `train` overlaid by `teacher.train`; "
            "or `{\"from\": EXPERIMENT, \"where\"/\"best\": ...}`: an earlier experiment's model; or `{\"checkpoint\": FILE}`, or `{\"url\": ..., \"sha256\": ...}`: a trained one"},
    KEY_TEMPERATURE(RF_SF_GRID),
    KEY_ALPHA(RF_SF_GRID),
    {.key = "baseline", .type = RF_SET_BOOL, .def = "true", .doc = "also train the student alone (not with `from`: the student is then the earlier stage's model)"},
    {.key = "teachers", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 1, .hi = 15, .def = "1",
     .doc = "an ensemble of N teachers (mean logits): trained from seeds seed … seed + N − 1, or with `teacher.from` the N models selected"},
    {.key = "hidden", .type = RF_SET_BOOL, .flags = RF_SF_GRID, .def = "false",
     .doc = "also distill hidden states (transformer block outputs, MSE through a learned projection)"},
    {.key = "hidden_weight", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1e6, .def = "1",
     .doc = "weight β of the hidden-state term"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_distill = {
    .name = "distill", .summary = "train a student on a teacher's soft targets (knowledge distillation)",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_STOP | RF_KIND_CKPT | RF_KIND_FROM | RF_KIND_STUDENT,
    .keys = distill_keys, .min_parents = 0, .max_parents = 16,
    .parents_doc = "the teacher checkpoint(s); several: an ensemble (mean logits); none: `teacher_ckpt`; with `init` \"parent\", the student last",
    .run = rf_task_distill,
    .experiment = "distill", .exp_keys = distill_exp_keys,
    .exp_doc = "teacher `train` → `distill` student; with `baseline`, also the student model trained alone (same settings, no teacher)",
    .expand = expand_distill, .plot = RF_PLOT_DISTILL,
};
