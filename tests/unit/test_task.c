/* Task layer: the kind table, the diagnostic kinds, "train" end to end
 * through rf_task_run into a temporary directory, and rf_task_finish's
 * measured metrics (sparsity, layer collapse, sizes). */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "raffle/task.h"
#include "raffle/engine.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"
#include "raffle/ckpt.h"

static cJSON *settings_of(const char *json) {
    cJSON *s = cJSON_Parse(json);
    cr_assert_not_null(s, "bad test JSON: %s", json);
    return s;
}

static rf_status run_task(const char *json, const char *out_dir, cJSON *metrics, rf_ctx *ctx) {
    cJSON *s = settings_of(json);
    rf_task_io io = {.settings = s, .out_dir = out_dir};
    rf_status st = rf_task_run(ctx, &io, metrics);
    cJSON_Delete(s);
    return st;
}

/* A preset initialised from seed (rf_model_free). */
static rf_model *new_model(rf_ctx *ctx, const char *preset, uint64_t seed) {
    rf_model *m;
    cr_assert_eq(rf_model_create(ctx, preset, &m), RF_OK, "%s", rf_ctx_error(ctx));
    cr_assert_eq(rf_model_init(ctx, m, seed), RF_OK);
    return m;
}

static double num(const cJSON *metrics, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(metrics, key);
    cr_assert(cJSON_IsNumber(v), "metric %s missing or not a number", key);
    return v->valuedouble;
}

Test(task, kind_table) {
    cr_assert_not_null(rf_task_kind_find("train"));
    cr_assert_not_null(rf_task_kind_find("noop"));
    cr_assert_not_null(rf_task_kind_find("fail"));
    cr_assert_null(rf_task_kind_find("bogus"));
    cr_assert_null(rf_task_kind_find(NULL));
    cr_assert_str_eq(rf_task_kind_find("train")->name, "train");
}

Test(task, noop_and_bad_settings) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"noop\",\"data\":\"no-such-dataset\"}", "/tmp", m, &ctx), RF_OK);
    const char *keys[] = {"accuracy", "loss", "sparsity", "bytes", "parameters", "seconds"};
    for (int i = 0; i < 6; i++) cr_assert_eq(num(m, keys[i]), 0.0);
    cr_assert_eq(run_task("{\"data\":\"synthetic\"}", "/tmp", m, &ctx), RF_ERR_INVALID);
    cr_assert_eq(run_task("{\"kind\":\"bogus\"}", "/tmp", m, &ctx), RF_ERR_UNSUPPORTED);
    cr_assert(strstr(rf_ctx_error(&ctx), "bogus"));
    cr_assert_eq(run_task("{\"kind\":\"train\",\"model\":\"lenet-300-100\"}", "/tmp", m, &ctx), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "data"), "%s", rf_ctx_error(&ctx));
    cJSON_Delete(m);
}

Test(task, fail_modes_return_errors) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"fail\",\"mode\":\"error\"}", "/tmp", m, &ctx), RF_ERR_INVALID);
    cr_assert_eq(run_task("{\"kind\":\"fail\",\"mode\":\"nan\"}", "/tmp", m, &ctx), RF_ERR_NAN);
    cr_assert_eq(run_task("{\"kind\":\"fail\",\"mode\":\"sideways\"}", "/tmp", m, &ctx), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "sideways"));
    rf_alloc_fail_after(0);  /* "oom" stops at the first refused allocation */
    rf_status s = run_task("{\"kind\":\"fail\",\"mode\":\"oom\"}", "/tmp", m, &ctx);
    rf_alloc_fail_after(-1);
    cr_assert_eq(s, RF_ERR_NOMEM);
    cJSON_Delete(m);
}

Test(task, fail_crash_raises_sigsegv, .signal = SIGSEGV) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *m = cJSON_CreateObject();
    run_task("{\"kind\":\"fail\",\"mode\":\"crash\"}", "/tmp", m, &ctx);
}

Test(task, train_settings_parse_and_reject) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_train_cfg c;
    cJSON *s = settings_of("{\"optimizer\":\"sgd\",\"lr\":0.05,\"momentum\":0.8,\"batch\":64,\"iterations\":7,"
                           "\"schedule\":\"step\",\"step_size\":4,\"gamma\":0.5,\"warmup\":3,\"label_smoothing\":0.1,"
                           "\"eval_limit\":100,\"seed\":9,\"augment\":\"crop:3+flip\"}");
    cr_assert_eq(rf_task_train_cfg(&ctx, s, &c), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(c.optim.type, RF_OPT_SGD);
    cr_assert_float_eq(c.optim.lr, 0.05, 1e-7);
    cr_assert_float_eq(c.optim.momentum, 0.8, 1e-7);
    cr_assert_eq(c.batch, 64); cr_assert_eq(c.iterations, 7); cr_assert_eq(c.seed, 9);
    cr_assert_eq(c.optim.sched, RF_SCHED_STEP); cr_assert_eq(c.optim.warmup_steps, 3);
    cr_assert_float_eq(c.label_smoothing, 0.1, 1e-7); cr_assert_eq(c.eval_limit, 100);
    cr_assert_eq(c.optim.step_size, 4); cr_assert_float_eq(c.optim.gamma, 0.5, 1e-7);
    cr_assert_eq(c.augment.crop_pad, 3); cr_assert_eq(c.augment.flip, 1);
    cJSON_Delete(s);
    cr_assert_eq(rf_task_train_cfg(&ctx, NULL, &c), RF_OK);
    /* the table's defaults (settings.c rf_train_settings) */
    cr_assert_eq(c.optim.type, RF_OPT_ADAM); cr_assert_eq(c.optim.sched, RF_SCHED_CONSTANT);
    cr_assert_eq(c.batch, 128); cr_assert_eq(c.epochs, 10); cr_assert_float_eq(c.optim.lr, 1e-3, 1e-9);
    const char *bad[] = {"{\"optimizer\":\"rmsprop\"}", "{\"batch\":0}", "{\"batch\":2.5}", "{\"lr\":\"x\"}",
                         "{\"schedule\":\"cyclic\"}", "{\"momentum\":2}", "{\"epochs\":0}", "{\"nesterov\":1}",
                         "{\"augment\":\"rotate\"}", "{\"augment\":\"crop:99\"}", "{\"schedule\":\"step\"}",
                         "{\"schedule\":\"step\",\"step_size\":5,\"gamma\":0}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = settings_of(bad[i]);
        cr_assert_eq(rf_task_train_cfg(&ctx, s, &c), RF_ERR_INVALID, "%s accepted", bad[i]);
        cJSON_Delete(s);
    }
}

Test(task, train_end_to_end_through_rf_task_run) {
    char dir[] = "/tmp/raffle_task_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *m = cJSON_CreateObject();
    const char *json = "{\"kind\":\"train\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\","
                       "\"iterations\":30,\"batch\":32,\"seed\":1,\"eval_limit\":64,\"eval_every\":10,\"validation\":100}";
    rf_status s = run_task(json, dir, m, &ctx);
    cr_assert_eq(s, RF_OK, "%s", rf_ctx_error(&ctx));
    const char *keys[] = {"accuracy", "loss", "sparsity", "parameters", "bytes", "dense_bytes", "compression_ratio",
                          "latency_ms", "dense_latency_ms", "throughput", "seconds", "steps", "test_accuracy", "test_loss",
                          "val_accuracy", "val_loss", "best_val_accuracy", "best_iteration", "test_accuracy_at_best_val"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) (void)num(m, keys[i]);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m, "collapsed_layers")));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "collapsed_layers")), 0);
    cr_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(m, "layer_sparsity")));
    cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "deployed_form")));
    cr_assert_eq(num(m, "parameters"), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
    cr_assert_eq(num(m, "steps"), 30);
    cr_assert_eq(num(m, "sparsity"), 0.0);
    double acc = num(m, "accuracy");
    cr_assert(acc > 0.3 && acc <= 1.0, "accuracy %g", acc);
    cr_assert_eq(num(m, "test_accuracy"), acc);
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(m, "best_accuracy"), "a best without its split");
    /* selection on validation: evaluated at steps 10, 20 and the end */
    double bi = num(m, "best_iteration");
    cr_assert(bi == 10 || bi == 20 || bi == 30, "best_iteration %g", bi);
    cr_assert_geq(num(m, "best_val_accuracy"), num(m, "val_accuracy"));
    cr_assert(num(m, "test_accuracy_at_best_val") >= 0 && num(m, "test_accuracy_at_best_val") <= 1);
    if (bi == 30) cr_assert_float_eq(num(m, "test_accuracy_at_best_val"), acc, 1e-12);
    char path[300]; snprintf(path, sizeof path, "%s/model.rckpt", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "model.rckpt missing");
    cr_assert_eq(num(m, "bytes"), (double)st.st_size);
    cr_assert_float_eq(num(m, "compression_ratio"), num(m, "raw_fp32_bytes") / num(m, "bytes"), 1e-9);
    cr_assert_gt(num(m, "latency_ms"), 0.0);
    /* the saved model, on the data its recorded settings prepare, evaluates
     * to the reported accuracies (test and validation) */
    rf_model *back;
    cr_assert_eq(rf_model_load(&ctx, path, &back), RF_OK, "%s", rf_ctx_error(&ctx));
    cJSON *rec = NULL;
    cr_assert_eq(rf_task_ckpt_settings(&ctx, path, &rec), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_not_null(rec);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(rec, "validation")->valuedouble, 100);
    rf_data_splits sp;
    cr_assert_eq(rf_task_open_data(&ctx, rec, &sp), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(sp.val.n, 100);
    cr_assert_eq(sp.train.n, 412);
    rf_dataset head = rf_dataset_head(sp.test, 64), vhead = rf_dataset_head(&sp.val, 64);
    double a2, l2;
    cr_assert_eq(rf_evaluate(&ctx, back, &head, 64, &a2, &l2), RF_OK);
    cr_assert_float_eq(a2, acc, 1e-12);
    cr_assert_eq(rf_evaluate(&ctx, back, &vhead, 64, &a2, &l2), RF_OK);
    cr_assert_float_eq(a2, num(m, "val_accuracy"), 1e-12);
    rf_model_free(back);
    rf_data_splits_free(&sp);
    cJSON_Delete(rec);
    cJSON_Delete(m);
    unlink(path); rmdir(dir);
}

/* rf_task_finish measures sparsity and collapse from the weights themselves. */
Test(task, finish_measures_sparsity_and_collapse) {
    char dir[] = "/tmp/raffle_fin_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *mod = new_model(&ctx, "lenet-300-100", 2);
    const rf_param *w1 = NULL, *w2 = NULL, *w3 = NULL;
    for (int i = 0; i < mod->n_ptensors; i++) {
        const rf_param *p = &mod->ptensors[i];
        if (p->role != RF_P_WEIGHT) continue;
        if (!w1) w1 = p; else if (!w2) w2 = p; else w3 = p;
    }
    cr_assert(w1 && w2 && w3);
    cr_assert_eq(w2->shape[1], 300);
    /* fc1: only unit 0 keeps weights (half the layer zero is not collapse);
     * fc2: column 0 (the only live input) zeroed -> no path through fc2 although
     * fc2 still has non-zero weights; the output layer is then cut off too,
     * and so is fc1, whose one live unit no kept weight of fc2 reads. */
    float *p1 = mod->params + w1->offset, *p2 = mod->params + w2->offset;
    memset(p1 + 784, 0, (w1->numel - 784) * sizeof(float));
    for (int j = 0; j < 100; j++) p2[j * 300] = 0.0f;
    rf_dataset *tr, *te;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:64", &tr, &te), RF_OK);
    cJSON *set = settings_of("{\"kind\":\"train\"}");
    rf_task_io io = {.settings = set, .out_dir = dir, .train = tr, .test = te};
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(rf_task_finish(&ctx, &io, mod, NULL, m), RF_OK, "%s", rf_ctx_error(&ctx));
    size_t zeros = (w1->numel - 784) + 100;
    for (size_t i = 0; i < 784; i++) zeros += p1[i] == 0.0f;
    double want = (double)zeros / (double)(w1->numel + w2->numel + w3->numel);
    cr_assert_float_eq(num(m, "sparsity"), want, 1e-9);
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(m, "layer_sparsity");
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(ls, w2->name)->valuedouble, 100.0 / w2->numel, 1e-9);
    const cJSON *col = cJSON_GetObjectItemCaseSensitive(m, "collapsed_layers");
    cr_assert_eq(cJSON_GetArraySize(col), 3, "%s", cJSON_PrintUnformatted(col));
    cr_assert_str_eq(cJSON_GetArrayItem(col, 0)->valuestring, mod->layers[w1->layer].name);
    cr_assert_str_eq(cJSON_GetArrayItem(col, 1)->valuestring, mod->layers[w2->layer].name);
    cr_assert_str_eq(cJSON_GetArrayItem(col, 2)->valuestring, mod->layers[w3->layer].name);
    cJSON_Delete(m);
    /* fc1 gets a second live unit (1) that fc2 reads: a path again */
    for (int j = 0; j < 100; j++) p2[j * 300 + 1] = 0.5f;
    for (int i = 0; i < 784; i++) p1[784 + i] = 0.5f;
    m = cJSON_CreateObject();
    cr_assert_eq(rf_task_finish(&ctx, &io, mod, NULL, m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "collapsed_layers")), 0);
    cJSON_Delete(m);
    /* a layer with no non-zero weight collapses, and, on a chain, every layer
     * with it: none reaches the output */
    memset(mod->params + w3->offset, 0, w3->numel * sizeof(float));
    for (size_t i = 0; i < w1->numel; i++) p1[i] = 0.5f;
    for (size_t i = 0; i < w2->numel; i++) p2[i] = 0.5f;
    m = cJSON_CreateObject();
    cr_assert_eq(rf_task_finish(&ctx, &io, mod, NULL, m), RF_OK, "%s", rf_ctx_error(&ctx));
    col = cJSON_GetObjectItemCaseSensitive(m, "collapsed_layers");
    cr_assert_eq(cJSON_GetArraySize(col), 3, "%s", cJSON_PrintUnformatted(col));
    cr_assert_str_eq(cJSON_GetArrayItem(col, 2)->valuestring, mod->layers[w3->layer].name);
    cJSON_Delete(m);
    cJSON_Delete(set);
    rf_model_free(mod); rf_dataset_free(tr); rf_dataset_free(te);
    char path[300]; snprintf(path, sizeof path, "%s/model.rckpt", dir);
    unlink(path); rmdir(dir);
}

/* Evaluation runs the layers pruned past the measured break-even on the
 * sparse kernel, by a fixed rule (no timing): the same numbers on every run,
 * equal to the dense evaluation within float rounding, hooks removed after,
 * and the count in the task's metrics. */
Test(task, evaluation_uses_sparse_kernel_by_rule) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *mod = new_model(&ctx, "lenet-300-100", 3);
    rf_rng r; rf_rng_init(&r, 4, 0);
    int nw = 0;
    for (int i = 0; i < mod->n_ptensors; i++) {
        const rf_param *p = &mod->ptensors[i];
        if (p->role == RF_P_BIAS) for (size_t k = 0; k < p->numel; k++) mod->params[p->offset + k] = 0.05f * rf_rng_normal(&r);
        if (p->role != RF_P_WEIGHT) continue;
        /* fc1 90% pruned, fc2 60%, fc3 dense */
        double sp = nw == 0 ? 0.9 : nw == 1 ? 0.6 : 0.0;
        for (size_t k = 0; k < p->numel; k++) if (rf_rng_uniform_double(&r) < sp) mod->params[p->offset + k] = 0.0f;
        nw++;
    }
    rf_dataset *tr, *te;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:300", &tr, &te), RF_OK);
    double acc_d, loss_d, acc_s, loss_s, acc_2, loss_2;
    int ns = -1;
    cr_assert_eq(rf_evaluate(&ctx, mod, te, 256, &acc_d, &loss_d), RF_OK);
    cr_assert_eq(rf_evaluate_deployed(&ctx, mod, te, 256, &acc_s, &loss_s, &ns, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(ns, 2, "batch 256: fc1 and fc2 are past 50%% (%d sparse)", ns);
    cr_assert_float_eq(loss_s, loss_d, 1e-5 * (fabs(loss_d) + 1.0));
    cr_assert_float_eq(acc_s, acc_d, 1e-9);
    cr_assert_eq(rf_evaluate_deployed(&ctx, mod, te, 256, &acc_2, &loss_2, NULL, NULL), RF_OK);
    cr_assert(loss_2 == loss_s && acc_2 == acc_s, "repeat differs: %.17g vs %.17g", loss_2, loss_s);
    cr_assert_eq(rf_evaluate_deployed(&ctx, mod, te, 16, &acc_2, &loss_2, &ns, NULL), RF_OK);
    cr_assert_eq(ns, 1, "batch 16: only fc1 is past 80%% (%d sparse)", ns);
    for (int i = 0; i < mod->n_layers; i++) cr_assert_null(mod->layers[i].infer_gemm);
    char dir[] = "/tmp/raffle_evd_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cJSON *set = settings_of("{\"kind\":\"train\"}");
    rf_task_io io = {.settings = set, .out_dir = dir, .train = tr, .test = te};
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(rf_task_finish(&ctx, &io, mod, NULL, m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq((int)num(m, "eval_sparse_layers"), 2);
    cr_assert(num(m, "loss") == loss_s);
    cJSON_Delete(m); cJSON_Delete(set);
    rf_model_free(mod); rf_dataset_free(tr); rf_dataset_free(te);
    char path[300]; snprintf(path, sizeof path, "%s/model.rckpt", dir);
    unlink(path); rmdir(dir);
    rf_kernels_release_workspace();
}

/* A stop request ends "train" with RF_ERR_PREEMPTED and writes nothing; a task
 * with a parent continues from the parent's checkpoint. */
Test(task, train_preemption_and_parent) {
    char dir[] = "/tmp/raffle_pre_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_ctx ctx; rf_ctx_init(&ctx);
    char path[300]; snprintf(path, sizeof path, "%s/model.rckpt", dir);
    volatile int stop = 1;
    cJSON *s = settings_of("{\"kind\":\"train\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"iterations\":5,\"batch\":32}");
    rf_task_io io = {.settings = s, .out_dir = dir, .stop_flag = &stop};
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(rf_task_run(&ctx, &io, m), RF_ERR_PREEMPTED);
    struct stat st;
    cr_assert_neq(stat(path, &st), 0, "a preempted task wrote a checkpoint");
    /* what it leaves is its resumable state, which the rerun consumes */
    char resume[300]; snprintf(resume, sizeof resume, "%s/resume.rckpt", dir);
    stop = 0;
    cr_assert_eq(rf_task_run(&ctx, &io, m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(stat(path, &st), 0);
    cJSON_Delete(s);
    cJSON_Delete(m);
    /* child: no "model", starts from the parent (accuracy cannot be chance-level) */
    char dir2[] = "/tmp/raffle_child_XXXXXX";
    cr_assert_not_null(mkdtemp(dir2));
    s = settings_of("{\"kind\":\"train\",\"data\":\"synthetic:256\",\"iterations\":2,\"batch\":32,\"lr\":1e-9,"
                    "\"optimizer\":\"sgd\",\"momentum\":0}");
    const char *parents[1] = {path};
    rf_task_io io2 = {.settings = s, .out_dir = dir2, .n_parents = 1, .parent_ckpts = parents};
    m = cJSON_CreateObject();
    cr_assert_eq(rf_task_run(&ctx, &io2, m), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *a, *b;
    char path2[300]; snprintf(path2, sizeof path2, "%s/model.rckpt", dir2);
    cr_assert_eq(rf_model_load(&ctx, path, &a), RF_OK);
    cr_assert_eq(rf_model_load(&ctx, path2, &b), RF_OK);
    cr_assert_eq(a->n_params, b->n_params);
    /* lr 1e-9 (the table's bounds exclude 0): the child's weights are the
     * parent's but for updates far below the weights' own rounding */
    for (size_t i = 0; i < a->n_params; i++) cr_assert(fabsf(a->params[i] - b->params[i]) < 1e-6f, "param %zu moved", i);
    rf_model_free(a); rf_model_free(b);
    cJSON_Delete(s);
    cJSON_Delete(m);
    unlink(path); unlink(path2); unlink(resume); rmdir(dir); rmdir(dir2);
    cr_assert_neq(stat(dir, &st), 0, "temp dir left behind");
}

/* The engine a task ran with: rf_task_engine takes the settings' "engine"
 * object over the defaults, rejects an unknown option or value, and
 * rf_task_engine_json (metrics.json's "engine") names the ISA used, the
 * BLAS and every option's effective value. */
Test(task, engine_settings_and_metrics) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *s = settings_of("{\"engine\":{\"conv\":\"gemm\",\"tb_chunk\":64,\"feat_runs\":\"off\"}}");
    cr_assert_eq(rf_task_engine(&ctx, s), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(ctx.engine.v[RF_ENGINE_CONV], RF_ENGINE_CONV_GEMM);
    cr_assert_eq(ctx.engine.v[RF_ENGINE_TB_CHUNK], 64);
    cr_assert_eq(ctx.engine.v[RF_ENGINE_FEAT_RUNS], RF_ENGINE_FEAT_OFF);
    cJSON *e = rf_task_engine_json(&ctx);
    cr_assert_not_null(e);
    const cJSON *isa = cJSON_GetObjectItemCaseSensitive(e, "isa");
    cr_assert(cJSON_IsString(isa));
    cr_assert_str_eq(isa->valuestring, rf_isa_name(rf_kernels_isa()));
    const cJSON *blas = cJSON_GetObjectItemCaseSensitive(e, "blas");
    cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(blas, "name")));
    cr_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(blas, "core")));
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "options");
    cr_assert_eq(cJSON_GetArraySize(o), RF_ENGINE_COUNT_, "one entry per engine option");
    for (int i = 0; i < RF_ENGINE_COUNT_; i++)
        cr_assert_not_null(cJSON_GetObjectItemCaseSensitive(o, rf_engine_options[i].name), "%s", rf_engine_options[i].name);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "conv")->valuestring, "gemm");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(o, "tb_chunk")->valuedouble, 64.0);
    /* what ran: the threads of the task's pool and its dense backend */
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(e, "threads")->valuedouble, 1.0);
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(e, "dense");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(dense, "backend")->valuestring, "raffle");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(dense, "isa")->valuestring,
                     rf_kernels_isa() >= RF_ISA_AVX512 ? "avx512" : rf_kernels_isa() >= RF_ISA_AVX2 ? "avx2" : "scalar");
    cJSON_Delete(e); cJSON_Delete(s);
    /* the thread count is the process's: kept from before, never from the settings */
    rf_ctx t2;
    rf_ctx_init(&t2);
    t2.engine.v[RF_ENGINE_THREADS] = 2;
    s = settings_of("{\"engine\":{\"conv\":\"direct\"}}");
    cr_assert_eq(rf_task_engine(&t2, s), RF_OK, "%s", rf_ctx_error(&t2));
    cr_assert_eq(t2.engine.v[RF_ENGINE_THREADS], 2);
    e = rf_task_engine_json(&t2);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(e, "threads")->valuedouble, 2.0);
    cJSON_Delete(e); cJSON_Delete(s);
    rf_gemm_detach(&t2);
    cr_assert_null(t2.engine.pool);
    /* the built-in conv value (session 6: auto3, the stride-2 backward on the
     * direct kernels; "auto" keeps the earlier bits), recorded by name */
    rf_ctx t3;
    rf_ctx_init(&t3);
    rf_engine_builtin(&t3.engine);
    cr_assert_eq(t3.engine.v[RF_ENGINE_CONV], RF_ENGINE_CONV_AUTO3);
    e = rf_task_engine_json(&t3);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "options"), "conv")->valuestring,
                     "auto3");
    cJSON_Delete(e);
    rf_gemm_detach(&t3);
    const char *bad[] = {"{\"engine\":{\"conv\":\"fft\"}}", "{\"engine\":{\"threads_x\":2}}",
                         "{\"engine\":{\"tb_chunk\":-1}}", "{\"engine\":{\"threads\":2}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = settings_of(bad[i]);
        cr_assert_eq(rf_task_engine(&ctx, s), RF_ERR_INVALID, "accepted %s", bad[i]);
        cJSON_Delete(s);
    }
    rf_gemm_detach(&ctx);
}

/* raffle eval --predictions: the three .npy files read back with the npy
 * reader hold the logits, their argmax and the labels, and the accuracy
 * they give is the one reported; a failure leaves none of them. */
Test(task, predictions_read_back_match_the_accuracy) {
    char dir[] = "/tmp/raffle_pred_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *mod = new_model(&ctx, "lenet-5", 4);
    rf_dataset *tr, *te;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:400", &tr, &te), RF_OK);
    char prefix[300], path[340];
    snprintf(prefix, sizeof prefix, "%s/p", dir);
    double acc = -1, loss = 0, acc_ref = -2, loss_ref = 0;
    cr_assert_eq(rf_task_write_predictions(&ctx, mod, te, 37, prefix, &acc, &loss, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_evaluate_deployed(&ctx, mod, te, 37, &acc_ref, &loss_ref, NULL, NULL), RF_OK);
    cr_assert_eq(acc, acc_ref);
    rf_tensor *lg, *pr, *lb;
    snprintf(path, sizeof path, "%s.logits.npy", prefix);
    cr_assert_eq(rf_npy_read(&ctx, path, &lg), RF_OK, "%s", rf_ctx_error(&ctx));
    snprintf(path, sizeof path, "%s.pred.npy", prefix);
    cr_assert_eq(rf_npy_read(&ctx, path, &pr), RF_OK, "%s", rf_ctx_error(&ctx));
    snprintf(path, sizeof path, "%s.labels.npy", prefix);
    cr_assert_eq(rf_npy_read(&ctx, path, &lb), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(lg->dtype == RF_F32 && lg->ndim == 2 && lg->shape[0] == te->n && lg->shape[1] == 10);
    cr_assert(pr->dtype == RF_I32 && pr->ndim == 1 && pr->shape[0] == te->n);
    cr_assert(lb->dtype == RF_I32 && lb->ndim == 1 && lb->shape[0] == te->n);
    float *want = NULL;
    cr_assert_eq(rf_predict(&ctx, mod, te, 37, &want), RF_OK);   /* same batches: same sums */
    const float *z = lg->data;
    const int32_t *p = pr->data, *y = lb->data;
    int64_t right = 0;
    for (int64_t i = 0; i < te->n; i++) {
        int arg = 0;
        for (int j = 1; j < 10; j++) if (z[i * 10 + j] > z[i * 10 + arg]) arg = j;
        cr_assert_eq(p[i], arg, "sample %lld", (long long)i);
        cr_assert_eq(y[i], te->y[i]);
        right += p[i] == y[i];
    }
    cr_assert_eq(memcmp(z, want, (size_t)te->n * 10 * sizeof(float)), 0, "logits differ from rf_predict's");
    cr_assert_float_eq((double)right / (double)te->n, acc, 1e-12);
    rf_free(want);
    rf_tensor_free(lg); rf_tensor_free(pr); rf_tensor_free(lb);
    /* an unwritable prefix: an error, and no file of the set */
    snprintf(prefix, sizeof prefix, "%s/missing/p", dir);
    cr_assert_neq(rf_task_write_predictions(&ctx, mod, te, 64, prefix, &acc, &loss, NULL), RF_OK);
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_neq(access(path, F_OK), 0);
    /* every allocation may fail: an error, never a partial set */
    snprintf(prefix, sizeof prefix, "%s/q", dir);
    const long live = rf_alloc_live();
    int done = 0;
    for (long n = 0; n < 100 && !done; n++) {
        rf_alloc_fail_after(n);
        rf_status s = rf_task_write_predictions(&ctx, mod, te, 64, prefix, &acc, &loss, NULL);
        rf_alloc_fail_after(-1);
        cr_assert(s == RF_OK || s == RF_ERR_NOMEM, "n=%ld: %s", n, rf_ctx_error(&ctx));
        snprintf(path, sizeof path, "%s.logits.npy", prefix);
        int have = access(path, F_OK) == 0;
        cr_assert_eq(have, s == RF_OK, "n=%ld: files %s after %s", n, have ? "present" : "absent", rf_strerror(s));
        done = s == RF_OK;
        cr_assert_eq(rf_alloc_live(), live, "n=%ld: leak", n);
    }
    cr_assert(done);
    rf_model_free(mod); rf_dataset_free(tr); rf_dataset_free(te);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* compression_ratio on a pruned + int8 chain (issue 23): every stage's ratio
 * is the raw fp32 bytes of the chain's dense model (4 bytes a parameter or
 * buffer, counted here from the architecture) over its own file's bytes,
 * so the int8 model of a 90%-pruned one is compared with the dense fp32
 * model, not with a compressed file of itself; its mask is kept; the prune
 * stage records the accuracy before fine-tuning and its training curve. */
Test(task, compression_ratio_through_a_pruned_int8_chain) {
    char d0[] = "/tmp/raffle_ch0_XXXXXX", d1[] = "/tmp/raffle_ch1_XXXXXX", d2[] = "/tmp/raffle_ch2_XXXXXX";
    cr_assert_not_null(mkdtemp(d0)); cr_assert_not_null(mkdtemp(d1)); cr_assert_not_null(mkdtemp(d2));
    rf_ctx ctx; rf_ctx_init(&ctx);
    char p0[300], p1[300], p2[300];
    snprintf(p0, sizeof p0, "%s/model.rckpt", d0);
    snprintf(p1, sizeof p1, "%s/model.rckpt", d1);
    snprintf(p2, sizeof p2, "%s/model.rckpt", d2);
    const double raw = (784.0 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10) * 4;
    cJSON *m0 = cJSON_CreateObject(), *m1 = cJSON_CreateObject(), *m2 = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"train\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":20,"
                          "\"batch\":32,\"validation\":100,\"eval_every\":10}", d0, m0, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(num(m0, "raw_fp32_bytes"), raw);
    cJSON *s1 = settings_of("{\"kind\":\"prune\",\"data\":\"synthetic:512\",\"method\":\"magnitude\",\"sparsity\":0.9,"
                            "\"finetune_iterations\":20,\"batch\":32,\"validation\":100,\"eval_every\":10}");
    const char *par1[1] = {p0};
    rf_task_io io1 = {.settings = s1, .out_dir = d1, .n_parents = 1, .parent_ckpts = par1};
    cr_assert_eq(rf_task_run(&ctx, &io1, m1), RF_OK, "%s", rf_ctx_error(&ctx));
    cJSON *s2 = settings_of("{\"kind\":\"quantize\",\"data\":\"synthetic:512\",\"mode\":\"ptq\",\"validation\":100}");
    const char *par2[1] = {p1};
    rf_task_io io2 = {.settings = s2, .out_dir = d2, .n_parents = 1, .parent_ckpts = par2};
    cr_assert_eq(rf_task_run(&ctx, &io2, m2), RF_OK, "%s", rf_ctx_error(&ctx));
    struct stat st1, st2;
    cr_assert_eq(stat(p1, &st1), 0);
    cr_assert_eq(stat(p2, &st2), 0);
    cr_assert_eq(num(m1, "raw_fp32_bytes"), raw);
    cr_assert_eq(num(m2, "raw_fp32_bytes"), raw, "the int8 stage keeps the dense baseline");
    cr_assert_eq(num(m2, "bytes"), (double)st2.st_size);
    cr_assert_float_eq(num(m1, "compression_ratio"), raw / (double)st1.st_size, 1e-12);
    cr_assert_float_eq(num(m2, "compression_ratio"), raw / (double)st2.st_size, 1e-12);
    /* 10% of the weights at 1 byte plus their positions: well past 4x the
     * dense fp32 model and past the fp32 pruned file */
    cr_assert_gt(num(m2, "compression_ratio"), 15.0, "ratio %g", num(m2, "compression_ratio"));
    cr_assert_gt(num(m2, "compression_ratio"), 2.0 * num(m1, "compression_ratio"));
    cr_assert_float_eq(num(m2, "sparsity"), num(m1, "sparsity"), 1e-3, "PTQ keeps the mask");
    /* the pruning target travels with the chain: the int8 row is a 90% row */
    cr_assert_eq(num(m1, "target_sparsity"), 0.9);
    cr_assert_eq(num(m2, "target_sparsity"), 0.9, "the int8 model of a 90%%-pruned one");
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(m0, "target_sparsity"), "a dense model has no target");
    /* the int8 file records the baseline and the target for a later stage too */
    rf_ckpt *c = NULL;
    cr_assert_eq(rf_ckpt_read(&ctx, p2, &c), RF_OK);
    cJSON *meta = cJSON_Parse(c->meta_json);
    cr_assert_eq(num(cJSON_GetObjectItemCaseSensitive(meta, "extra"), "raw_fp32_bytes"), raw);
    cr_assert_eq(num(cJSON_GetObjectItemCaseSensitive(meta, "extra"), "target_sparsity"), 0.9);
    cJSON_Delete(meta);
    rf_ckpt_free(c);
    /* accuracy before fine-tuning and the fine-tuning curve: points at steps 10 and 20 */
    double a0 = num(m1, "accuracy_before_finetune");
    cr_assert(a0 >= 0 && a0 <= 1);
    (void)num(m1, "val_accuracy_before_finetune");
    const cJSON *curve = cJSON_GetObjectItemCaseSensitive(m1, "curve");
    cr_assert_eq(cJSON_GetArraySize(curve), 2);
    cr_assert_eq(num(cJSON_GetArrayItem(curve, 0), "step"), 10);
    cr_assert_eq(num(cJSON_GetArrayItem(curve, 1), "step"), 20);
    cr_assert_float_eq(num(cJSON_GetArrayItem(curve, 1), "val_accuracy"), num(m1, "val_accuracy"), 1e-12,
                       "the last point is the final model's validation accuracy");
    (void)num(cJSON_GetArrayItem(curve, 0), "train_loss");
    /* QAT of the pruned model (mask locked) trains: it keeps its curve, and
     * inherits the target like PTQ */
    char d3[] = "/tmp/raffle_ch3_XXXXXX", p3[300];
    cr_assert_not_null(mkdtemp(d3));
    snprintf(p3, sizeof p3, "%s/model.rckpt", d3);
    cJSON *m3 = cJSON_CreateObject();
    cJSON *s3 = settings_of("{\"kind\":\"quantize\",\"data\":\"synthetic:512\",\"mode\":\"qat\",\"iterations\":20,"
                            "\"batch\":32,\"validation\":100,\"eval_every\":10}");
    rf_task_io io3 = {.settings = s3, .out_dir = d3, .n_parents = 1, .parent_ckpts = par2};
    cr_assert_eq(rf_task_run(&ctx, &io3, m3), RF_OK, "%s", rf_ctx_error(&ctx));
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(m3, "curve");
    cr_assert_eq(cJSON_GetArraySize(qc), 2, "QAT evaluations at 10 and 20");
    cr_assert_eq(num(cJSON_GetArrayItem(qc, 1), "step"), 20);
    double qv = num(cJSON_GetArrayItem(qc, 0), "val_accuracy");
    cr_assert(qv >= 0 && qv <= 1);
    cr_assert_eq(num(m3, "target_sparsity"), 0.9);
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(m2, "curve"), "PTQ does not train: no curve");
    cJSON_Delete(s3); cJSON_Delete(m3);
    unlink(p3); rmdir(d3);
    cJSON_Delete(s1); cJSON_Delete(s2);
    cJSON_Delete(m0); cJSON_Delete(m1); cJSON_Delete(m2);
    unlink(p0); unlink(p1); unlink(p2);
    char r[320];
    snprintf(r, sizeof r, "%s/resume.rckpt", d0); unlink(r);
    snprintf(r, sizeof r, "%s/resume.rckpt", d1); unlink(r);
    rmdir(d0); rmdir(d1); rmdir(d2);
}

/* The "gmp" kind (Zhu & Gupta 2017): over 60 steps with the target reached
 * at half the run and an update every 10%, the masks are recomputed at
 * steps 0, 6, ..., 30 (six updates), the final sparsity of the eligible
 * weights is the target (global magnitude: exact up to one weight), and the
 * run after prune_end keeps the mask (fine-tuning) so the zeros stay. */
Test(task, gmp_reaches_its_target_on_schedule) {
    char dir[] = "/tmp/raffle_gmp_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"gmp\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":60,"
                          "\"batch\":32,\"sparsity\":0.8,\"prune_end\":0.5,\"prune_every\":0.1,\"validation\":100,"
                          "\"eval_every\":20}", dir, m, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(num(m, "mask_updates"), 6);
    cr_assert_eq(num(m, "prune_end_step"), 30);
    cr_assert_eq(num(m, "steps"), 60);
    const double prunable = 784.0 * 300 + 300 * 100 + 100 * 10;
    cr_assert(fabs(num(m, "sparsity") - 0.8) <= 1.0 / prunable, "sparsity %.9f", num(m, "sparsity"));
    cr_assert_eq(num(m, "target_sparsity"), 0.8);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "curve")), 3, "evaluations at 20, 40, 60");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(m, "method")->valuestring, "gmp");
    /* Zhu & Gupta's t0 and s_i: dense for the first 20% (12 steps), then
     * 0.5 at step 12 and updates at 18, 24, 30 (four), the target at 30 */
    cJSON *m2 = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"gmp\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":60,"
                          "\"batch\":32,\"sparsity\":0.8,\"prune_end\":0.5,\"prune_every\":0.1,\"prune_start\":0.2,"
                          "\"initial_sparsity\":0.5,\"validation\":100,\"eval_every\":20}", dir, m2, &ctx), RF_OK, "%s",
                 rf_ctx_error(&ctx));
    cr_assert_eq(num(m2, "mask_updates"), 4);
    cr_assert_eq(num(m2, "prune_start_step"), 12);
    cr_assert_eq(num(m2, "prune_end_step"), 30);
    cr_assert(fabs(num(m2, "sparsity") - 0.8) <= 1.0 / prunable, "sparsity %.9f", num(m2, "sparsity"));
    cJSON_Delete(m2);
    /* per-tensor final rates (layer scope): each tensor ends at its own rate, exactly */
    cJSON *m4 = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"gmp\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":20,"
                          "\"batch\":32,\"sparsity\":0.8,\"scope\":\"layer\",\"prune_end\":0.5,\"prune_every\":0.1,"
                          "\"layer_sparsity\":{\"fc1.weight\":0.94,\"fc3*\":0.5},\"validation\":100}", dir, m4, &ctx), RF_OK,
                 "%s", rf_ctx_error(&ctx));
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(m4, "layer_remaining");
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(lr, "fc1.weight")->valuedouble, 1.0 - 0.94, 1e-9);
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(lr, "fc2.weight")->valuedouble, 1.0 - 0.8, 1e-9);
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(lr, "fc3.weight")->valuedouble, 0.5, 1e-9);
    cJSON_Delete(m4);
    /* a start after the end: refused when the task runs, too */
    cJSON *m3 = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"gmp\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":6,"
                          "\"sparsity\":0.8,\"prune_start\":0.9}", dir, m3, &ctx), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "prune_start: 0.9 is not before prune_end 0.75"), "%s", rf_ctx_error(&ctx));
    cJSON_Delete(m3);
    /* a target the schedule cannot reach: refused by the settings table */
    cJSON *bad = cJSON_CreateObject();
    cr_assert_neq(run_task("{\"kind\":\"gmp\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":6,"
                           "\"sparsity\":1}", dir, bad, &ctx), RF_OK);
    cJSON_Delete(bad);
    cJSON_Delete(m);
    char p[300];
    snprintf(p, sizeof p, "%s/model.rckpt", dir); unlink(p);
    snprintf(p, sizeof p, "%s/resume.rckpt", dir); unlink(p);
    rmdir(dir);
}

/* prune -> distill (issue 23): the student is the pruned model (init
 * "parent", the last parent; the teacher first) and keeps its mask through
 * distillation: the same weights stay zero, the sparsity is the pruned one. */
Test(task, distilled_student_keeps_its_mask) {
    char d0[] = "/tmp/raffle_kd0_XXXXXX", d1[] = "/tmp/raffle_kd1_XXXXXX", d2[] = "/tmp/raffle_kd2_XXXXXX";
    cr_assert_not_null(mkdtemp(d0)); cr_assert_not_null(mkdtemp(d1)); cr_assert_not_null(mkdtemp(d2));
    rf_ctx ctx; rf_ctx_init(&ctx);
    char p0[300], p1[300], p2[300];
    snprintf(p0, sizeof p0, "%s/model.rckpt", d0);
    snprintf(p1, sizeof p1, "%s/model.rckpt", d1);
    snprintf(p2, sizeof p2, "%s/model.rckpt", d2);
    cJSON *m0 = cJSON_CreateObject(), *m1 = cJSON_CreateObject(), *m2 = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"train\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"iterations\":20,\"batch\":32}",
                          d0, m0, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    cJSON *s1 = settings_of("{\"kind\":\"prune\",\"data\":\"synthetic:512\",\"method\":\"magnitude\",\"sparsity\":0.8,"
                            "\"finetune_iterations\":0,\"finetune_epochs\":0,\"batch\":32}");
    const char *par1[1] = {p0};
    rf_task_io io1 = {.settings = s1, .out_dir = d1, .n_parents = 1, .parent_ckpts = par1};
    cr_assert_eq(rf_task_run(&ctx, &io1, m1), RF_OK, "%s", rf_ctx_error(&ctx));
    cJSON *s2 = settings_of("{\"kind\":\"distill\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"init\":\"parent\","
                            "\"iterations\":20,\"batch\":32}");
    const char *par2[2] = {p0, p1};
    rf_task_io io2 = {.settings = s2, .out_dir = d2, .n_parents = 2, .parent_ckpts = par2};
    cr_assert_eq(rf_task_run(&ctx, &io2, m2), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(num(m2, "teachers"), 1, "the last parent is the student, not a teacher");
    cr_assert_float_eq(num(m2, "sparsity"), num(m1, "sparsity"), 1e-12);
    cr_assert_eq(num(m2, "target_sparsity"), 0.8, "the student keeps the pruned parent's mask and its target");
    rf_model *a, *b;
    cr_assert_eq(rf_model_load(&ctx, p1, &a), RF_OK);
    cr_assert_eq(rf_model_load(&ctx, p2, &b), RF_OK);
    size_t moved = 0;
    for (size_t i = 0; i < a->n_params; i++) {
        if (a->params[i] == 0.0f) cr_assert_eq(b->params[i], 0.0f, "pruned weight %zu revived", i);
        moved += a->params[i] != b->params[i];
    }
    cr_assert_gt(moved, 0, "the student trained");
    cr_assert_eq(num(m2, "raw_fp32_bytes"), num(m1, "raw_fp32_bytes"));
    rf_model_free(a); rf_model_free(b);
    cJSON_Delete(s1); cJSON_Delete(s2);
    cJSON_Delete(m0); cJSON_Delete(m1); cJSON_Delete(m2);
    unlink(p0); unlink(p1); unlink(p2);
    char r[320];
    snprintf(r, sizeof r, "%s/resume.rckpt", d0); unlink(r);
    rmdir(d0); rmdir(d1); rmdir(d2);
}

/* Pruned at initialisation (no parent), then trained: the model before
 * training is an untrained one, so there is no "before fine-tuning"
 * accuracy (it would be chance and read as a collapse in the ShrinkBench
 * plot); the training keeps its curve and the target. */
Test(task, prune_at_init_has_no_before_finetune_accuracy) {
    char dir[] = "/tmp/raffle_pai_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *m = cJSON_CreateObject();
    cr_assert_eq(run_task("{\"kind\":\"prune\",\"data\":\"synthetic:512\",\"model\":\"lenet-300-100\",\"method\":\"snip\","
                          "\"sparsity\":0.8,\"finetune_iterations\":20,\"batch\":32,\"validation\":100,\"eval_every\":10}",
                          dir, m, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(m, "accuracy_before_finetune"));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(m, "val_accuracy_before_finetune"));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "curve")), 2);
    cr_assert_eq(num(m, "target_sparsity"), 0.8);
    cJSON_Delete(m);
    char p[300];
    snprintf(p, sizeof p, "%s/model.rckpt", dir); unlink(p);
    snprintf(p, sizeof p, "%s/resume.rckpt", dir); unlink(p);
    rmdir(dir);
}
