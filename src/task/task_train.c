/* Task kind "train": trains a model from a preset/spec (or continues from the
 * first parent's checkpoint) and finishes through rf_task_finish. Also holds
 * the reader of the training settings that every kind which trains
 * (pruning fine-tune, distillation, QAT) shares, so one key means one thing
 * everywhere (docs/training.md lists them). */
#include "raffle/plan.h"
#include "raffle/settings.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The training keys come from one table (settings.c rf_train_settings):
 * its defaults are the defaults here, in job files and on the command line,
 * and its bounds are checked here too, so a settings object built by hand
 * (tests, front-ends) is held to what a job file is. */
void rf_task_train_cfg_default(rf_train_cfg *cfg) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_status s = rf_task_train_cfg(&ctx, NULL, cfg);
    RF_ASSERT(s == RF_OK);   /* the table's defaults are valid */
    (void)s;
}

rf_status rf_task_train_cfg(rf_ctx *ctx, const cJSON *settings, rf_train_cfg *cfg) {
    if (settings && !cJSON_IsObject(settings)) return rf_error(ctx, RF_ERR_INVALID, "settings must be a JSON object");
    for (const rf_setting *k = rf_train_settings; settings && k->key; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(settings, k->key);
        if (v && !cJSON_IsNull(v) && rf_setting_check(ctx, k, v, "settings", 0) != RF_OK) {
            char msg[RF_ERR_MAX];
            snprintf(msg, sizeof msg, "%s", rf_ctx_error(ctx));
            return rf_error(ctx, RF_ERR_INVALID, "%s (key \"%s\")", msg, k->key);
        }
    }
    const cJSON *seed = settings ? cJSON_GetObjectItemCaseSensitive(settings, "seed") : NULL;
    if (seed && (!cJSON_IsNumber(seed) || seed->valuedouble < 0 || seed->valuedouble != floor(seed->valuedouble) ||
                 seed->valuedouble > 18446744073709551615.0))
        return rf_error(ctx, RF_ERR_INVALID, "settings \"seed\": expected an integer >= 0");
    const cJSON *nest = settings ? cJSON_GetObjectItemCaseSensitive(settings, "nesterov") : NULL;
    if (nest && !cJSON_IsBool(nest)) return rf_error(ctx, RF_ERR_INVALID, "settings \"nesterov\": expected true or false");
    const rf_setting *T = rf_train_settings;
    rf_train_cfg_default(cfg);
    /* the optimizer's own constants (betas, eps, step decay); every key of
     * the table is then set from the settings or the table's default */
    rf_optim_cfg_default(&cfg->optim, (rf_optim_type)rf_optim_type_from_name(rf_settings_str(settings, T, "optimizer")));
    cfg->optim.sched = (rf_sched_type)rf_sched_type_from_name(rf_settings_str(settings, T, "schedule"));
    cfg->epochs = (int)rf_settings_num(settings, T, "epochs");
    cfg->iterations = (int64_t)rf_settings_num(settings, T, "iterations");
    cfg->batch = (int)rf_settings_num(settings, T, "batch");
    cfg->optim.lr = (float)rf_settings_num(settings, T, "lr");
    cfg->optim.momentum = (float)rf_settings_num(settings, T, "momentum");
    cfg->optim.weight_decay = (float)rf_settings_num(settings, T, "weight_decay");
    cfg->optim.warmup_steps = (int64_t)rf_settings_num(settings, T, "warmup");
    cfg->optim.clip_norm = (float)rf_settings_num(settings, T, "clip_norm");
    cfg->optim.nesterov = rf_settings_bool(settings, T, "nesterov");
    cfg->label_smoothing = (float)rf_settings_num(settings, T, "label_smoothing");
    cfg->eval_limit = (int64_t)rf_settings_num(settings, T, "eval_limit");
    cfg->eval_every = (int)rf_settings_num(settings, T, "eval_every");
    cfg->bn_l1 = (float)rf_settings_num(settings, T, "bn_l1");
    cfg->seed = cJSON_IsNumber(seed) ? (uint64_t)seed->valuedouble : 0;
    RF_TRY(rf_augment_parse(ctx, rf_settings_str(settings, T, "augment"), &cfg->augment));
    cfg->optim.step_size = (int64_t)rf_settings_num(settings, T, "step_size");
    cfg->optim.gamma = (float)rf_settings_num(settings, T, "gamma");
    /* without a period StepLR would hold the rate constant: refuse it */
    if (cfg->optim.sched == RF_SCHED_STEP && cfg->optim.step_size <= 0)
        return rf_error(ctx, RF_ERR_INVALID, "settings: schedule \"step\" needs \"step_size\" > 0 (steps between decays)");
    if (cfg->iterations == 0 && cfg->epochs == 0)
        return rf_error(ctx, RF_ERR_INVALID, "settings: one of \"epochs\" or \"iterations\" must be > 0");
    return RF_OK;
}

rf_status rf_task_train_cfg_io(rf_ctx *ctx, const rf_task_io *io, int log_every, rf_train_cfg *cfg) {
    RF_TRY(rf_task_train_cfg(ctx, io->settings, cfg));
    /* log_every < 0 asks for no progress at all: evaluation lines included */
    cfg->log = io->log_every < 0 ? NULL : io->log;
    cfg->log_ud = io->log_ud;
    cfg->log_every = rf_task_log_every(io, log_every);
    cfg->stop_flag = io->stop_flag;
    return RF_OK;
}

/* ---- resumable training state ---------------------------------------------
 * OUT_DIR/resume.rckpt is an ordinary checkpoint container (atomic write,
 * CRC-checked read) holding the flat blocks a resumed rf_train needs to
 * replay the uninterrupted run bit for bit (CONTRIBUTING.md rule 5: one block each):
 * "params", "masks" (if pruned), "buffers" (BN statistics), "optim.m",
 * "optim.v" (moments, when the optimizer has them), the selection state's
 * copy of the model at the best validation step "best.params",
 * "best.buffers" (when kept), all dense f32, and in the metadata the next
 * step, the optimizer's step count and the best validation accuracy, its
 * loss and step. Data order, augmentation and dropout need no state: they
 * are functions of (seed, epoch, step) (train.h). The metadata also names
 * whose state it is ("task": the task id, "settings_hash": its settings'
 * hash; a file that names another task, or none, is refused) and
 * "total_steps", from which the coordinator estimates what is left of the
 * task. Version 3 (version 2 had either the owner or the validation state,
 * version 1 the best *test* accuracy, which selection no longer reads). */
#define RESUME_FORMAT "raffle-resume"
#define RESUME_VERSION RF_TASK_RESUME_VERSION

static rf_status add_block(rf_ctx *ctx, rf_ckpt *c, const char *name, const float *p, size_t n) {
    if (!p || n == 0) return RF_OK;
    int64_t shape[1] = {(int64_t)n};
    return rf_ckpt_add(ctx, c, name, RF_F32, 1, shape, RF_STORE_DENSE, p, NULL, NULL);
}

/* The bytes of OUT_DIR/name as block "aux" (u8), when the file exists. */
static rf_status add_aux(rf_ctx *ctx, rf_ckpt *c, const char *out_dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    if (access(path, R_OK) != 0) return RF_OK;
    unsigned char *buf = NULL;
    size_t n = 0;
    RF_TRY(rf_read_file(ctx, path, &buf, &n));
    int64_t shape[1] = {(int64_t)n};
    rf_status s = n ? rf_ckpt_add(ctx, c, "aux", RF_U8, 1, shape, RF_STORE_DENSE, buf, NULL, NULL) : RF_OK;
    rf_free(buf);
    return s;
}

/* Block "aux" of a resume point back into OUT_DIR/name (atomic write). */
static rf_status restore_aux(rf_ctx *ctx, const rf_ckpt *c, const char *out_dir, const char *name) {
    const rf_ckpt_tensor *t = rf_ckpt_find(c, "aux");
    if (!t || !name) return RF_OK;
    if (t->dtype != RF_U8) return rf_error(ctx, RF_ERR_FORMAT, "resume state: block \"aux\" is not u8");
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    return rf_write_file_atomic(ctx, path, t->data, (size_t)rf_ckpt_tensor_numel(t));
}

/* A task id or settings hash as it goes into the metadata: 16 hex digits, or "". */
static const char *hex16(const char *s) { return s && strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16 ? s : ""; }

static rf_status resume_save(rf_ctx *ctx, const rf_task_io *io, const rf_model *m, const rf_optim *o,
                             int64_t next_step, int64_t total_steps, const rf_train_best *b) {
    rf_ckpt *c = NULL;
    RF_TRY(rf_ckpt_new(ctx, &c));
    char meta[768], path[4200];
    snprintf(meta, sizeof meta,
             "{\"format\":\"" RESUME_FORMAT "\",\"version\":%d,\"task\":\"%s\",\"settings_hash\":\"%s\",\"step\":%lld,"
             "\"total_steps\":%lld,\"optim_t\":%lld,\"n_params\":%zu,"
             "\"best_val_accuracy\":%.17g,\"best_val_loss\":%.17g,\"best_iteration\":%lld}",
             RESUME_VERSION, hex16(io->task_id), hex16(io->settings_hash), (long long)next_step, (long long)total_steps,
             (long long)o->t, m->n_params, b->val_accuracy, isfinite(b->val_loss) ? b->val_loss : -1.0,
             (long long)b->iteration);
    const char *out_dir = io->out_dir;
    rf_status s = rf_ckpt_set_meta(ctx, c, meta);
    if (!s) s = add_block(ctx, c, "params", m->params, m->n_params);
    if (!s) s = add_block(ctx, c, "masks", m->masks, m->n_params);
    if (!s) s = add_block(ctx, c, "buffers", m->buffers, m->n_buffers);
    if (!s) s = add_block(ctx, c, "optim.m", o->m, o->n);
    if (!s) s = add_block(ctx, c, "optim.v", o->v, o->n);
    if (!s && b->params) s = add_block(ctx, c, "best.params", b->params, b->n_params);
    if (!s && b->params) s = add_block(ctx, c, "best.buffers", b->buffers, b->n_buffers);
    if (!s && io->resume_aux) s = add_aux(ctx, c, out_dir, io->resume_aux);
    snprintf(path, sizeof path, "%s/" RF_TASK_RESUME_FILE, out_dir);
    if (!s) s = rf_ckpt_write(ctx, c, path);
    rf_ckpt_free(c);
    return s;
}

/* Copies block `name` of c into dst (n floats); absent blocks must be absent
 * in the model too (want == 0), else the file is not this task's. */
static rf_status load_block(rf_ctx *ctx, const rf_ckpt *c, const char *name, float *dst, size_t n, int want) {
    const rf_ckpt_tensor *t = rf_ckpt_find(c, name);
    if (!t && !want) return RF_OK;
    if (!t || !dst || t->dtype != RF_F32 || rf_ckpt_tensor_numel(t) != (int64_t)n)
        return rf_error(ctx, RF_ERR_FORMAT, "resume state: block \"%s\" %s", name, t ? "has the wrong size" : "is missing");
    memcpy(dst, t->data, n * sizeof(float));
    return RF_OK;
}

/* 1 if meta's string `key` is want (absent want: no check). */
static int meta_is(const cJSON *meta, const char *key, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return !want || (cJSON_IsString(v) && strcmp(v->valuestring, want) == 0);
}

/* The selection state of a resume file into b (its copy allocated here). */
static rf_status load_best(rf_ctx *ctx, const rf_ckpt *c, const cJSON *meta, const rf_model *m, rf_train_best *b) {
    const cJSON *ba = cJSON_GetObjectItemCaseSensitive(meta, "best_val_accuracy");
    const cJSON *bl = cJSON_GetObjectItemCaseSensitive(meta, "best_val_loss");
    const cJSON *bi = cJSON_GetObjectItemCaseSensitive(meta, "best_iteration");
    b->val_accuracy = cJSON_IsNumber(ba) ? ba->valuedouble : -1.0;
    b->val_loss = cJSON_IsNumber(bl) && bl->valuedouble >= 0 ? bl->valuedouble : NAN;
    b->iteration = cJSON_IsNumber(bi) ? (int64_t)bi->valuedouble : -1;
    if (!rf_ckpt_find(c, "best.params")) return RF_OK;
    b->n_params = m->n_params;
    b->n_buffers = m->n_buffers;
    b->params = rf_malloc((m->n_params ? m->n_params : 1) * sizeof(float));
    b->buffers = m->n_buffers ? rf_malloc(m->n_buffers * sizeof(float)) : NULL;
    if (!b->params || (m->n_buffers && !b->buffers)) return rf_error(ctx, RF_ERR_NOMEM, "resume state: best model");
    RF_TRY(load_block(ctx, c, "best.params", b->params, m->n_params, 1));
    return load_block(ctx, c, "best.buffers", b->buffers, m->n_buffers, m->n_buffers > 0);
}

static rf_status resume_load(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_optim *o, int64_t *step,
                             rf_train_best *b) {
    const char *path = io->resume_from;
    rf_ckpt *c = NULL;
    RF_TRY(rf_ckpt_read(ctx, path, &c));
    cJSON *meta = cJSON_Parse(c->meta_json);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, "version");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(meta, "step");
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(meta, "optim_t");
    const cJSON *bi = cJSON_GetObjectItemCaseSensitive(meta, "best_iteration");
    rf_status s = RF_OK;
    if (!cJSON_IsString(f) || strcmp(f->valuestring, RESUME_FORMAT) != 0 || !cJSON_IsNumber(v) ||
        v->valuedouble != RESUME_VERSION || !cJSON_IsNumber(st) || !(st->valuedouble >= 0 && st->valuedouble <= 1e15) ||
        !cJSON_IsNumber(ot) || !(ot->valuedouble >= 0 && ot->valuedouble <= 1e15) ||
        (cJSON_IsNumber(bi) && !(bi->valuedouble >= -1 && bi->valuedouble <= 1e15)))
        s = rf_error(ctx, RF_ERR_FORMAT, "%s: not a version %d resume state", path, RESUME_VERSION);
    else if (!meta_is(meta, "task", io->task_id ? hex16(io->task_id) : NULL) ||
             !meta_is(meta, "settings_hash", io->settings_hash ? hex16(io->settings_hash) : NULL))
        s = rf_error(ctx, RF_ERR_FORMAT, "%s: the resume state belongs to another task or other settings: refused", path);
    const rf_ckpt_tensor *mk = rf_ckpt_find(c, "masks");
    if (!s && mk && !m->masks) s = rf_model_ensure_masks(ctx, m);
    if (!s) s = load_block(ctx, c, "params", m->params, m->n_params, 1);
    if (!s) s = load_block(ctx, c, "masks", m->masks, m->n_params, m->masks != NULL);
    if (!s) s = load_block(ctx, c, "buffers", m->buffers, m->n_buffers, m->n_buffers > 0);
    if (!s) s = load_block(ctx, c, "optim.m", o->m, o->n, o->m != NULL);
    if (!s) s = load_block(ctx, c, "optim.v", o->v, o->n, o->v != NULL);
    if (!s) s = load_best(ctx, c, meta, m, b);
    if (!s && io->out_dir) s = restore_aux(ctx, c, io->out_dir, io->resume_aux);
    if (!s) {
        *step = (int64_t)st->valuedouble;
        o->t = (int64_t)ot->valuedouble;
    } else {
        rf_train_best_free(b);
        rf_error_prefix(ctx, "%s", path);
    }
    cJSON_Delete(meta);
    rf_ckpt_free(c);
    return s;
}

/* Hooks around the caller's: after each step, save the state when the
 * period has passed. Every hook forwards to the caller's with its ud. */
typedef struct resumer {
    const rf_train_hooks *in;
    rf_ctx     *ctx;
    const rf_task_io *io;
    rf_optim   *opt;
    double      every, last;
    int64_t     total;
    const rf_train_best *best;   /* the run's selection state, updated by rf_train */
} resumer;

static rf_status rs_before(void *ud, rf_model *m, int64_t step, int64_t total) {
    resumer *r = ud;
    r->total = total;
    return r->in && r->in->before_step ? r->in->before_step(r->in->ud, m, step, total) : RF_OK;
}
static rf_status rs_loss(void *ud, rf_model *m, const float *x, const float *logits, const int32_t *labels,
                         const int64_t *idx, int batch, float *dlogits, float *loss) {
    resumer *r = ud;
    return r->in->loss(r->in->ud, m, x, logits, labels, idx, batch, dlogits, loss);
}
static rf_status rs_after_backward(void *ud, rf_model *m, int64_t step) {
    resumer *r = ud;
    return r->in && r->in->after_backward ? r->in->after_backward(r->in->ud, m, step) : RF_OK;
}
static rf_status rs_after_step(void *ud, rf_model *m, int64_t step) {
    resumer *r = ud;
    if (r->in && r->in->after_step) RF_TRY(r->in->after_step(r->in->ud, m, step));
    if (r->every > 0 && rf_now() - r->last >= r->every) {
        r->last = rf_now();
        /* the state after step `step`: a resumed run starts at step + 1 */
        RF_TRY(resume_save(r->ctx, r->io, m, r->opt, step + 1, r->total, r->best));
    }
    return RF_OK;
}
static rf_status rs_after_epoch(void *ud, rf_model *m, int epoch, double acc) {
    resumer *r = ud;
    return r->in && r->in->after_epoch ? r->in->after_epoch(r->in->ud, m, epoch, acc) : RF_OK;
}

rf_status rf_task_train_resumable(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_dataset *train,
                                  const rf_dataset *test, const rf_train_cfg *cfg, rf_optim *opt,
                                  const rf_train_hooks *hooks, rf_train_result *res) {
    rf_optim own;
    int have_own = 0;
    if (!opt) {
        RF_TRY(rf_optim_init(ctx, &own, &cfg->optim, m->n_params));
        have_own = 1;
        opt = &own;
    }
    rf_train_best best;
    rf_train_best_init(&best);
    rf_train_cfg c = *cfg;
    c.stop_flag = io->stop_flag;
    c.best = &best;   /* the selection state: carried over a preemption in resume.rckpt */
    resumer r = {hooks, ctx, io, opt, io->resume_every_s, rf_now(), 0, &best};
    rf_status s = RF_OK;
    int64_t start = c.start_step;
    if (io->resume_from) {
        s = resume_load(ctx, io, m, opt, &start, &best);
        if (!s && io->log) {
            char line[160];
            snprintf(line, sizeof line, "resuming from step %lld (%s)", (long long)start, RF_TASK_RESUME_FILE);
            io->log(io->log_ud, line);
        }
    }
    c.start_step = start;
    rf_train_hooks h = {&r, rs_before, hooks && hooks->loss ? rs_loss : NULL, rs_after_backward, rs_after_step, rs_after_epoch};
    if (!s) s = rf_train(ctx, m, train, io->val, test, &c, opt, &h, res);
    if (!s) {
        res->steps += start;
        if (res->stopped) {
            s = resume_save(ctx, io, m, opt, res->steps, r.total, &best);
            if (!s) s = rf_error(ctx, RF_ERR_PREEMPTED, "stopped on request after step %lld; state saved to %s",
                                 (long long)res->steps, RF_TASK_RESUME_FILE);
        }
    }
    rf_train_best_free(&best);
    if (have_own) rf_optim_free(&own);
    return s;
}

int rf_task_add_selection(const rf_train_result *r, cJSON *metrics) {
    static const char *const keys[] = {"best_val_accuracy", "best_iteration", "test_accuracy_at_best_val"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, keys[i]);
    return cJSON_AddNumberToObject(metrics, "best_val_accuracy", r->best_val_accuracy) &&
           cJSON_AddNumberToObject(metrics, "best_iteration", (double)r->best_iteration) &&
           cJSON_AddNumberToObject(metrics, "test_accuracy_at_best_val", r->test_accuracy_at_best_val) != NULL;
}

rf_status rf_task_train(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "train: no training data");
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg_io(ctx, io, 100, &cfg));
    rf_model *m = NULL;
    RF_TRY(rf_task_open_model(ctx, "train", io->n_parents > 0 ? io->parent_ckpts[0] : NULL, io->settings, io->train, cfg.seed, &m));
    rf_train_result r;
    rf_status s = rf_task_train_resumable(ctx, io, m, io->train, io->test, &cfg, NULL, NULL, &r);
    if (s == RF_ERR_PREEMPTED) rf_error_prefix(ctx, "train");
    char *extra = NULL;
    if (s == RF_OK) s = rf_task_ckpt_extra(ctx, "train", io, -1, r.steps, &extra);
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!rf_task_add_selection(&r, metrics) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            !cJSON_AddNumberToObject(metrics, "train_loss", r.train_loss) ||
            !cJSON_AddNumberToObject(metrics, "samples_per_s", r.samples_per_s) ||
            !cJSON_AddNumberToObject(metrics, "cpu_seconds", r.cpu_seconds) ||
            !cJSON_AddNumberToObject(metrics, "cpu_samples_per_s",
                                     r.cpu_seconds > 0 ? (double)r.steps * cfg.batch / r.cpu_seconds : 0.0) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "train: cannot build metrics");
    }
    cJSON_free(extra);
    rf_model_free(m);
    return s;
}

/* ---- the descriptor ------------------------------------------------------------ */

static int expand_train(rf_plan *p, const rf_point *pt) {
    return rf_plan_dense(p, pt, pt->data, pt->model, pt->train) < 0 ? -1 : 0;
}

static const char *label_train(const cJSON *settings, char *buf, size_t n) { return "dense"; }

static const char *const init_values[] = {"parent", NULL};
static const rf_setting train_keys[] = {
    {.key = "init", .type = RF_SET_ENUM, .flags = RF_SF_OPTIONAL | RF_SF_NOCLI, .choices = init_values,
     .doc = "\"parent\": starts from the parent's weights (set by the ofa expansion; absent: from the seed)"},
    RF_SETTINGS_END
};
static const rf_setting train_exp_keys[] = { RF_SETTINGS_END };

const rf_kind rf_kind_train = {
    .name = "train", .summary = "train a model (preset or spec) on a dataset",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_STOP | RF_KIND_RESUMABLE | RF_KIND_CKPT,
    .keys = train_keys, .min_parents = 0, .max_parents = 1,
    .parents_doc = "optional: a checkpoint to continue training from (fine-tuning)",
    .run = rf_task_train,
    .experiment = "train", .exp_keys = train_exp_keys,
    .exp_doc = "one dense `train` task per grid point", .expand = expand_train,
    .label = label_train, .plot = RF_PLOT_NONE,
};
