/* The training loop every compression method runs inside, and evaluation.
 *
 * Determinism: the batch order of epoch e is rf_batcher(seed, e); dropout at
 * step s draws from the Philox stream (seed, DROPOUT_STREAM + s), a pure
 * function of the step, so a run resumed at start_step replays exactly the
 * batches and dropout masks of an uninterrupted one. With one compute thread
 * every floating-point reduction runs in a fixed order, so the same seed and
 * data give the same bytes.
 *
 * Selection reads the validation split only: periodic evaluation,
 * best_iteration and the copy of the best model; the test split is
 * evaluated after the last step (final model, best model) and reported.
 *
 * Methods plug in through rf_train_hooks (train.h) instead of forking the
 * loop. Step order: before_step, forward, loss (hook or cross-entropy),
 * finite check, zero_grad, backward, after_backward, optimizer, after_step,
 * stop_flag check, periodic evaluation. */
#include "raffle/train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Stream ids: independent Philox streams for shuffling-independent purposes. */
#define DROPOUT_STREAM 0x64726f706f757400ull  /* "dropout\0" */

void rf_train_cfg_default(rf_train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 1;
    c->batch = 128;
    rf_optim_cfg_default(&c->optim, RF_OPT_ADAM);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t sample_size(const rf_dataset *ds) { return (size_t)ds->c * ds->h * ds->w; }

/* The model must take the dataset's images and have an output for each class. */
static rf_status check_fit(rf_ctx *ctx, const rf_model *m, const rf_dataset *ds) {
    size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    if (in != sample_size(ds))
        return rf_error(ctx, RF_ERR_SHAPE, "dataset %s has %dx%dx%d samples (%zu values) but the model expects %dx%dx%d (%zu)",
                        ds->name, ds->c, ds->h, ds->w, sample_size(ds), m->input.d[0], m->input.d[1], m->input.d[2], in);
    if (ds->n_classes > m->n_classes)
        return rf_error(ctx, RF_ERR_SHAPE, "dataset %s has %d classes but the model has only %d outputs",
                        ds->name, ds->n_classes, m->n_classes);
    if (ds->n <= 0) return rf_error(ctx, RF_ERR_DATA, "dataset %s is empty", ds->name);
    return RF_OK;
}

rf_status rf_model_create_for_data(rf_ctx *ctx, const char *name_or_path, const rf_dataset *ds, rf_model **out) {
    if (!ds) return rf_model_create(ctx, name_or_path, out);
    return rf_model_create_for(ctx, name_or_path, ds->c, ds->h, ds->w, ds->n_classes, out);
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (!isfinite(x[i])) return 0;
    return 1;
}

/* Names where a non-finite loss came from: the first parameter tensor that is
 * already non-finite (a diverged step), else the first layer whose output in
 * the last forward went non-finite, else the loss itself (overflow). */
static rf_status nan_error(rf_ctx *ctx, rf_model *m, int64_t step, float loss) {
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        if (!all_finite(m->params + p->offset, p->numel))
            return rf_error(ctx, RF_ERR_NAN, "step %lld: loss is %g; parameter %s (layers[%d] %s) is non-finite",
                            (long long)step, (double)loss, p->name, p->layer, m->layers[p->layer].name);
    }
    int i = rf_model_first_nonfinite(m);
    if (i >= 0)
        return rf_error(ctx, RF_ERR_NAN, "step %lld: loss is %g; first non-finite output at layers[%d] %s",
                        (long long)step, (double)loss, i, m->layers[i].name);
    return rf_error(ctx, RF_ERR_NAN, "step %lld: loss is %g with finite logits (loss overflow)", (long long)step, (double)loss);
}

static void logf_(const rf_train_cfg *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const rf_train_cfg *cfg, const char *fmt, ...) {
    if (!cfg->log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cfg->log(cfg->log_ud, line);
}

/* Mean loss / accuracy over ds in inference mode, batches in file order. */
static rf_status eval_impl(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch,
                           double *accuracy, double *loss, float *all_logits) {
    RF_TRY(check_fit(ctx, m, ds));
    if (batch <= 0) batch = 256;
    const int k = m->n_classes;
    const size_t ss = sample_size(ds);
    double sum_loss = 0.0;
    int64_t correct = 0;
    for (int64_t s = 0; s < ds->n; s += batch) {
        int b = (int)(ds->n - s < batch ? ds->n - s : batch);
        const float *logits;
        RF_TRY(rf_model_forward(ctx, m, ds->x + (size_t)s * ss, b, 0, &logits));
        sum_loss += (double)rf_loss_xent(logits, ds->y + s, b, k, 0.0f, NULL) * b;
        for (int i = 0; i < b; i++) {
            const float *z = logits + (size_t)i * k;
            int arg = 0;
            for (int j = 1; j < k; j++) if (z[j] > z[arg]) arg = j;
            correct += arg == ds->y[s + i];
        }
        if (all_logits) memcpy(all_logits + (size_t)s * k, logits, (size_t)b * k * sizeof(float));
    }
    if (accuracy) *accuracy = (double)correct / (double)ds->n;
    if (loss) *loss = sum_loss / (double)ds->n;
    return RF_OK;
}

rf_status rf_evaluate(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch,
                      double *accuracy, double *loss) {
    return eval_impl(ctx, m, ds, batch, accuracy, loss, NULL);
}

rf_status rf_evaluate_logits(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, double *accuracy,
                             double *loss, float *logits) {
    return eval_impl(ctx, m, ds, batch, accuracy, loss, logits);
}

rf_status rf_predict(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, float **logits) {
    *logits = NULL;
    RF_TRY(check_fit(ctx, m, ds));
    RF_TRY(rf_check_cap(ctx, (uint64_t)ds->n * m->n_classes * sizeof(float), "predictions"));
    float *out = rf_malloc((size_t)ds->n * m->n_classes * sizeof(float));
    if (!out) return rf_error(ctx, RF_ERR_NOMEM, "predict: cannot allocate logits for %lld samples", (long long)ds->n);
    rf_status s = eval_impl(ctx, m, ds, batch, NULL, NULL, out);
    if (s != RF_OK) { rf_free(out); return s; }
    *logits = out;
    return RF_OK;
}

/* Evaluates on ds (validation or test), capped at eval_limit samples (smoke
 * runs, benchmarks). */
static rf_status capped_eval(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, const rf_train_cfg *cfg,
                             double *acc, double *loss) {
    rf_dataset view = *ds;
    if (cfg->eval_limit > 0 && cfg->eval_limit < ds->n) view = rf_dataset_head(ds, cfg->eval_limit);
    return rf_evaluate(ctx, m, &view, 256, acc, loss);
}

/* ---- selection ----------------------------------------------------------------
 * The best validation accuracy and a copy of the model where it was reached
 * (parameters and batch-norm statistics: what inference reads), so the test
 * split is evaluated there once, after training, instead of at every new
 * best. */
void rf_train_best_init(rf_train_best *b) {
    memset(b, 0, sizeof *b);
    b->val_accuracy = -1.0;
    b->val_loss = NAN;
    b->iteration = -1;
}

void rf_train_best_free(rf_train_best *b) {
    if (!b) return;
    rf_free(b->params);
    rf_free(b->buffers);
    rf_train_best_init(b);
}

/* Records a validation result at `steps`: a strictly better accuracy is the
 * new best (ties keep the earlier step, LTH's early-stopping iteration);
 * keep: also copy the model (there is a test split to evaluate it on). */
static rf_status note_val(rf_ctx *ctx, const rf_model *m, rf_train_best *b, double acc, double loss, int64_t steps,
                          int keep) {
    if (!(acc > b->val_accuracy)) return RF_OK;
    b->val_accuracy = acc;
    b->val_loss = loss;
    b->iteration = steps;
    if (!keep) return RF_OK;
    if (!b->params || b->n_params != m->n_params || b->n_buffers != m->n_buffers) {
        rf_free(b->params);
        rf_free(b->buffers);
        b->params = rf_malloc((m->n_params ? m->n_params : 1) * sizeof(float));
        b->buffers = m->n_buffers ? rf_malloc(m->n_buffers * sizeof(float)) : NULL;
        b->n_params = m->n_params;
        b->n_buffers = m->n_buffers;
        if (!b->params || (m->n_buffers && !b->buffers))
            return rf_error(ctx, RF_ERR_NOMEM, "train: cannot keep the best model (%zu parameters)", m->n_params);
    }
    memcpy(b->params, m->params, m->n_params * sizeof(float));
    if (m->n_buffers) memcpy(b->buffers, m->buffers, m->n_buffers * sizeof(float));
    return RF_OK;
}

static void swap_floats(float *a, float *b, size_t n) {
    for (size_t i = 0; i < n; i++) { float t = a[i]; a[i] = b[i]; b[i] = t; }
}

/* The test split at the end: the final model, then the model at the best
 * validation step (swapped in and back out; the same model when the best is
 * the final step). */
static rf_status final_test(rf_ctx *ctx, rf_model *m, const rf_dataset *test, const rf_train_cfg *cfg,
                            rf_train_best *b, int64_t step, rf_train_result *res) {
    RF_TRY(capped_eval(ctx, m, test, cfg, &res->test_accuracy, &res->test_loss));
    if (b->iteration < 0) return RF_OK;
    if (b->iteration == step) {
        res->test_accuracy_at_best_val = res->test_accuracy;
        res->test_loss_at_best_val = res->test_loss;
        return RF_OK;
    }
    if (!b->params) return RF_OK;   /* no copy (a caller's state without one): stays -1 */
    RF_ASSERT(b->n_params == m->n_params && b->n_buffers == m->n_buffers);
    swap_floats(m->params, b->params, m->n_params);
    swap_floats(m->buffers, b->buffers, m->n_buffers);
    rf_status s = capped_eval(ctx, m, test, cfg, &res->test_accuracy_at_best_val, &res->test_loss_at_best_val);
    swap_floats(m->params, b->params, m->n_params);
    swap_floats(m->buffers, b->buffers, m->n_buffers);
    return s;
}

typedef struct loop_state {
    float   *x, *dlogits;
    int32_t *y;
    int64_t *idx;
    rf_optim own_opt;
    int      have_own;
    rf_batcher b;
    int      have_batcher;
    rf_train_best own_best;   /* when the caller keeps none (cfg->best) */
} loop_state;

static void loop_free(loop_state *L) {
    rf_free(L->x); rf_free(L->y); rf_free(L->idx); rf_free(L->dlogits);
    rf_train_best_free(&L->own_best);
    if (L->have_own) rf_optim_free(&L->own_opt);
    if (L->have_batcher) rf_batcher_free(&L->b);
}

/* Appends a point to cfg->curve (when kept): the mean training loss since
 * the previous point (*sum / *n, then reset) and the validation numbers. */
rf_status rf_train_curve_push(rf_ctx *ctx, rf_train_curve *c, rf_train_point p) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 32;
        rf_train_point *v = rf_realloc(c->v, (size_t)cap * sizeof *v);
        if (!v) return rf_error(ctx, RF_ERR_NOMEM, "train: curve");
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = p;
    return RF_OK;
}

static rf_status curve_add(rf_ctx *ctx, const rf_train_cfg *cfg, int64_t step, double *sum, int64_t *n, double acc,
                           double loss) {
    if (!cfg->curve || *n == 0) return RF_OK;
    RF_TRY(rf_train_curve_push(ctx, cfg->curve, (rf_train_point){step, *sum / (double)*n, acc, loss}));
    *sum = 0.0;
    *n = 0;
    return RF_OK;
}

static rf_status record_eval(rf_ctx *ctx, rf_model *m, const rf_dataset *val, const rf_dataset *test,
                             const rf_train_cfg *cfg, rf_train_best *b, int64_t steps_done, int epoch, double *acc_out,
                             double *csum, int64_t *cn) {
    double acc = -1.0, loss = 0.0;
    *acc_out = -1.0;
    if (!val) return curve_add(ctx, cfg, steps_done, csum, cn, -1.0, NAN);
    RF_TRY(capped_eval(ctx, m, val, cfg, &acc, &loss));
    RF_TRY(curve_add(ctx, cfg, steps_done, csum, cn, acc, loss));
    RF_TRY(note_val(ctx, m, b, acc, loss, steps_done, test != NULL));
    logf_(cfg, "step %lld epoch %d: val accuracy %.4f loss %.4f", (long long)steps_done, epoch, acc, loss);
    *acc_out = acc;
    return RF_OK;
}

static rf_status train_loop(rf_ctx *ctx, rf_model *m, const rf_dataset *train, const rf_dataset *val,
                            const rf_dataset *test, const rf_train_cfg *cfg, rf_optim *opt, const rf_train_hooks *hooks,
                            rf_train_result *res, loop_state *L) {
    rf_train_best *best = cfg->best ? cfg->best : &L->own_best;
    const int k = m->n_classes;
    const size_t ss = sample_size(train);
    int batch = cfg->batch > 0 ? cfg->batch : 128;
    /* Full batches only (drop_last): every step sees the same batch size, which
     * keeps batchnorm statistics and the loss scale uniform. A set smaller than
     * one batch is trained as one batch of all its samples. */
    if (batch > train->n) batch = (int)train->n;
    const int64_t per_epoch = train->n / batch;
    const int64_t total = cfg->iterations > 0 ? cfg->iterations : (int64_t)cfg->epochs * per_epoch;
    if (total <= 0) return rf_error(ctx, RF_ERR_INVALID, "train: nothing to do (epochs %d, iterations %lld)", cfg->epochs, (long long)cfg->iterations);

    if (!(L->x = rf_aligned_alloc(64, (size_t)batch * ss * sizeof(float))) ||
        !(L->y = rf_malloc((size_t)batch * sizeof(int32_t))) ||
        !(L->idx = rf_malloc((size_t)batch * sizeof(int64_t))) ||
        !(L->dlogits = rf_malloc((size_t)batch * k * sizeof(float))))
        return rf_error(ctx, RF_ERR_NOMEM, "train: cannot allocate batch buffers (batch %d)", batch);
    if (!opt) {
        RF_TRY(rf_optim_init(ctx, &L->own_opt, &cfg->optim, m->n_params));
        L->have_own = 1;
        opt = &L->own_opt;
    } else if (opt->n != m->n_params) {
        return rf_error(ctx, RF_ERR_SHAPE, "train: optimizer has %zu entries, model %zu parameters", opt->n, m->n_params);
    }
    rf_model_apply_masks(m);
    /* the step's blocks made (and their pages mapped) before the clock
     * starts: setup, like the batch buffers above */
    RF_TRY(rf_model_reserve(ctx, m, batch));

    const double t0 = rf_now();
    double train_time = 0.0, epoch_loss = 0.0, last_epoch_loss = NAN, lsum = 0.0;
    int64_t ln = 0;
    /* the training loss since the curve's last point: in the curve when one
     * is kept (a resume carries it over) */
    double *csum = cfg->curve ? &cfg->curve->pend_sum : &lsum;
    int64_t *cn = cfg->curve ? &cfg->curve->pend_n : &ln;
    int64_t epoch_steps = 0, samples = 0;
    int64_t step = cfg->start_step > 0 ? cfg->start_step : 0;
    int epoch = (int)(step / per_epoch);
    /* stay so without the split or when stopped early */
    res->test_accuracy = res->val_accuracy = res->test_accuracy_at_best_val = -1.0;
    res->test_loss = res->val_loss = res->test_loss_at_best_val = NAN;
    while (step < total) {
        RF_TRY(rf_batcher_init(ctx, &L->b, train, batch, cfg->seed, epoch, 1, 1));
        L->have_batcher = 1;
        L->b.pool = ctx->engine.pool;
        if (rf_augment_active(&cfg->augment)) RF_TRY(rf_batcher_set_augment(ctx, &L->b, &cfg->augment));
        L->b.pos = (step - (int64_t)epoch * per_epoch) * batch;  /* resume inside an epoch */
        epoch_loss = 0.0;
        epoch_steps = 0;
        int ended_epoch = 0;
        while (step < total) {
            double ts = rf_now(), tc = cpu_now();
            int n = rf_batcher_next(&L->b, L->x, L->y, L->idx);
            if (n < batch) { ended_epoch = 1; break; }
            if (hooks && hooks->before_step) RF_TRY(hooks->before_step(hooks->ud, m, step, total));
            rf_rng_init(&m->dropout_rng, cfg->seed, DROPOUT_STREAM + (uint64_t)step);
            const float *logits;
            RF_TRY(rf_model_forward(ctx, m, L->x, batch, 1, &logits));
            float loss;
            if (hooks && hooks->loss)
                RF_TRY(hooks->loss(hooks->ud, m, L->x, logits, L->y, L->idx, batch, L->dlogits, &loss));
            else
                loss = rf_loss_xent(logits, L->y, batch, k, cfg->label_smoothing, L->dlogits);
            if (!isfinite(loss)) return nan_error(ctx, m, step, loss);
            *csum += loss;   /* before the hooks: a state saved after this step includes it */
            (*cn)++;
            rf_model_zero_grad_on(ctx, m);
            RF_TRY(rf_model_backward(ctx, m, L->dlogits));
            if (cfg->bn_l1 > 0.0f) RF_TRY(rf_model_bn_l1(ctx, m, cfg->bn_l1));
            if (hooks && hooks->after_backward) RF_TRY(hooks->after_backward(hooks->ud, m, step));
            float lr = rf_sched_lr(&opt->cfg, step, total);
            rf_optim_step(opt, m, lr);
            if (hooks && hooks->after_step) RF_TRY(hooks->after_step(hooks->ud, m, step));
            step++;
            samples += batch;
            train_time += rf_now() - ts;
            res->cpu_seconds += cpu_now() - tc;
            epoch_loss += loss;
            epoch_steps++;
            if (cfg->log_every > 0 && step % cfg->log_every == 0)
                logf_(cfg, "step %lld/%lld epoch %d: loss %.4f lr %.3g, %.0f samples/s", (long long)step, (long long)total,
                      epoch, (double)loss, (double)lr, train_time > 0 ? samples / train_time : 0.0);
            /* Evaluations belong to the step that ends where they are due,
             * so they run before a stop request is honoured: a run stopped
             * here and resumed sees exactly the evaluations (and selection)
             * of an uninterrupted one. */
            const int epoch_end = L->b.pos + batch > train->n;
            if (step < total && cfg->eval_every > 0 && step % cfg->eval_every == 0) {
                double acc;
                RF_TRY(record_eval(ctx, m, val, test, cfg, best, step, epoch, &acc, csum, cn));
            }
            if (step < total && epoch_end) {
                double acc = -1.0;
                if (cfg->eval_every == 0) RF_TRY(record_eval(ctx, m, val, test, cfg, best, step, epoch, &acc, csum, cn));
                if (hooks && hooks->after_epoch) RF_TRY(hooks->after_epoch(hooks->ud, m, epoch, acc));
            }
            if (cfg->stop_flag && *cfg->stop_flag) { res->stopped = 1; }
            if (epoch_end || res->stopped) { ended_epoch = epoch_end; break; }
        }
        rf_batcher_free(&L->b);
        L->have_batcher = 0;
        if (epoch_steps == 0 && !res->stopped)  /* would loop forever over empty epochs */
            return rf_error(ctx, RF_ERR_INTERNAL, "train: epoch %d produced no batch of %d from %lld samples",
                            epoch, batch, (long long)train->n);
        if (epoch_steps > 0) last_epoch_loss = epoch_loss / (double)epoch_steps;
        if (res->stopped) break;
        if (ended_epoch && step < total) epoch++;
    }
    /* The final evaluation (its validation accuracy goes to after_epoch of
     * the last epoch too), also when a resumed attempt starts with every step
     * done. A preempted run skips it so the caller can save state and exit. */
    if (!res->stopped && step >= total) {
        double acc = -1.0;
        if (val) {
            RF_TRY(capped_eval(ctx, m, val, cfg, &res->val_accuracy, &res->val_loss));
            RF_TRY(note_val(ctx, m, best, res->val_accuracy, res->val_loss, step, test != NULL));
            acc = res->val_accuracy;
        }
        RF_TRY(curve_add(ctx, cfg, step, csum, cn, val ? res->val_accuracy : -1.0, val ? res->val_loss : NAN));
        if (test) RF_TRY(final_test(ctx, m, test, cfg, best, step, res));
        logf_(cfg, "done: %lld steps, val accuracy %.4f (best %.4f at step %lld), test accuracy %.4f "
              "(at the best val step %.4f)", (long long)step, res->val_accuracy, best->val_accuracy,
              (long long)best->iteration, res->test_accuracy, res->test_accuracy_at_best_val);
        if (hooks && hooks->after_epoch) RF_TRY(hooks->after_epoch(hooks->ud, m, (int)((total - 1) / per_epoch), acc));
    }
    res->best_val_accuracy = best->val_accuracy;
    res->best_iteration = best->iteration;
    res->steps = step - (cfg->start_step > 0 ? cfg->start_step : 0);
    res->train_loss = last_epoch_loss;
    res->samples_per_s = train_time > 0 ? (double)samples / train_time : 0.0;
    res->seconds = rf_now() - t0;
    return RF_OK;
}

rf_status rf_train(rf_ctx *ctx, rf_model *m, const rf_dataset *train, const rf_dataset *val,
                   const rf_dataset *test, const rf_train_cfg *cfg, rf_optim *opt, const rf_train_hooks *hooks,
                   rf_train_result *res) {
    memset(res, 0, sizeof *res);
    if (!m || !train || !cfg) return rf_error(ctx, RF_ERR_INVALID, "train: NULL model, dataset or config");
    RF_TRY(check_fit(ctx, m, train));
    if (val && val->n == 0) val = NULL;
    if (val) RF_TRY(check_fit(ctx, m, val));
    if (test) RF_TRY(check_fit(ctx, m, test));
    if (cfg->batch < 0) return rf_error(ctx, RF_ERR_INVALID, "train: batch must be > 0, got %d", cfg->batch);
    if (!(cfg->label_smoothing >= 0.0f && cfg->label_smoothing < 1.0f))
        return rf_error(ctx, RF_ERR_INVALID, "train: label smoothing must be in [0, 1), got %g", (double)cfg->label_smoothing);
    loop_state L;
    memset(&L, 0, sizeof L);
    rf_train_best_init(&L.own_best);
    rf_status s = train_loop(ctx, m, train, val, test, cfg, opt, hooks, res, &L);
    loop_free(&L);
    return s;
}
