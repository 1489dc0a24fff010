/* The study's plots: what a compression paper shows, drawn from the report's
 * rows (src/report/svg.c draws them).
 *
 * Grouping: a marker averages the rows of one "group" (the task's label
 * without its seed, raffle/job.h), so only seeds are ever averaged: a grid
 * over scope x finetune.lr is four lines, never one. A line is a "series"
 * (the label without the seed and without the key on the x axis: sparsity,
 * round, temperature). Which plot a row is in comes from its kind's
 * descriptor (rf_kind.plot).
 *
 *  - pruning: accuracy vs compression ratio, log axis, per method, mean ±
 *    std over seeds, the dense parents as reference (ShrinkBench, Blalock
 *    et al. 2020, Fig. 3); with FLOPs in the rows also vs theoretical
 *    speedup; accuracy before fine-tuning dashed where rows have it;
 *  - per-layer weights remaining per method at the highest sparsities (the
 *    layer-collapse view of SynFlow, Tanaka et al. 2020, Fig. 1);
 *  - lottery tickets: accuracy and early-stop iteration vs weights remaining,
 *    IMP rounds with their controls (Frankle & Carbin 2019, Fig. 3-4);
 *  - distillation: student vs temperature, against the teacher and the
 *    student trained alone (Hinton et al. 2015, sec. 3);
 *  - quantization: each int8 model joined to its float parent (Jacob et al.
 *    2018);
 *  - training curves, where rows keep them ("curve");
 *  - every task: accuracy vs size and vs batch-1 latency, coloured by
 *    method, Pareto frontier circled and listed in a table. */
#include "report/report_internal.h"
#include "raffle/task.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rf_kind_plot plot_of(const cJSON *row) {
    const rf_kind *k = rf_kind_get(rf_kind_find(rep_str(row, "kind")));
    return k ? k->plot : RF_PLOT_NONE;
}
static int is_diag(const cJSON *row) {
    const rf_kind *k = rf_kind_get(rf_kind_find(rep_str(row, "kind")));
    return !k || (k->flags & RF_KIND_DIAG);
}
static int has_plot(const cJSON *tasks, rf_kind_plot pl) {
    for (const cJSON *t = tasks->child; t; t = t->next) if (plot_of(t) == pl) return 1;
    return 0;
}

/* The y axis of every accuracy plot: the split is in the name. */
static axis acc_axis(void) { return (axis){.label = "test accuracy", .unit = AX_PERCENT}; }

/* all parameters / nonzero parameters (ShrinkBench's compression ratio);
 * from the sparsity of the prunable weights when the counts are missing */
static double param_ratio(const cJSON *t) {
    double p = rep_num(t, "parameters"), nz = rep_num(t, "nonzero_parameters");
    if (p > 0 && nz > 0) return p / nz;
    double s = rep_num(t, "sparsity");
    return isfinite(s) && s < 1 ? 1 / (1 - s) : NAN;
}

static void render(rf_buf *b, plot *p) {
    if (p) plot_render(b, p, NULL);
    plot_free(p);
}

/* ---- pruning -------------------------------------------------------------------- */

/* A set of rows: appended, then sorted and made unique (a parent shared by
 * many children is drawn once). */
typedef struct rows { const cJSON **v; int n, cap; } rows;
static void rows_add(rows *r, const cJSON *t) {
    /* out of memory: fewer reference points, nothing wrong */
    if (rep_grow((void **)&r->v, &r->cap, r->n, sizeof *r->v)) r->v[r->n++] = t;
}
static int ptr_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(const cJSON *const *)a, y = (uintptr_t)*(const cJSON *const *)b;
    return x < y ? -1 : x > y;
}
static void rows_unique(rows *r) {
    if (!r->n) return;
    qsort(r->v, (size_t)r->n, sizeof *r->v, ptr_cmp);
    int m = 1;
    for (int k = 1; k < r->n; k++) if (r->v[k] != r->v[m - 1]) r->v[m++] = r->v[k];
    r->n = m;
}

static void pruning(rf_buf *b, const cJSON *tasks, const rep_index *ix, int speedup) {
    axis x = {.label = speedup ? "theoretical speedup: dense FLOPs / FLOPs (log scale)"
                               : "compression ratio: all parameters / nonzero parameters (log scale)",
              .log = 1, .unit = AX_RATIO};
    plot *p = plot_new(speedup ? "Pruning: test accuracy vs theoretical speedup" : "Pruning: test accuracy vs compression ratio",
                       "ShrinkBench style (Blalock et al. 2020): one line per method and setting, markers are the mean over "
                       "seeds with ±1 standard deviation bars, n = seeds per marker; dense: the unpruned parents (a dotted "
                       "level across the plot). Dashed, hollow: the same models before fine-tuning.",
                       x, acc_axis(), PL_LINES | PL_AGG);
    if (!p) return;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!rep_done(t) || plot_of(t) != RF_PLOT_SPARSITY) continue;
        double xv = speedup ? rep_num(t, "dense_flops") / rep_num(t, "flops") : param_ratio(t);
        int si = plot_series(p, rep_str(t, "series"), 0);
        plot_add(p, si, rep_str(t, "group"), xv, rep_num(t, "accuracy"), t, rep_str(t, "label"));
        double before = rep_num(t, "accuracy_before_finetune");
        if (isfinite(before)) {
            char name[512];
            snprintf(name, sizeof name, "%s (before fine-tuning)", rep_str(t, "series"));
            plot_add(p, plot_series_like(p, name, ST_DASHED | ST_HOLLOW, si), rep_str(t, "group"), xv, before, t, rep_str(t, "label"));
        }
    }
    /* the dense parents, each once however many tasks it was pruned into */
    rows R = {0};
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const cJSON *d = rep_done(t) && plot_of(t) == RF_PLOT_SPARSITY ? rep_done_parent(ix, t) : NULL;
        if (d && plot_of(d) == RF_PLOT_NONE) rows_add(&R, d);
    }
    rows_unique(&R);
    for (int k = 0; k < R.n; k++) {
        const cJSON *d = R.v[k];
        plot_add(p, plot_series(p, rep_str(d, "series"), ST_REF | ST_HLINE), rep_str(d, "group"), speedup ? 1 : param_ratio(d),
                 rep_num(d, "accuracy"), d, rep_str(d, "label"));
    }
    rf_free(R.v);
    render(b, p);
}

/* Layer names in the order the rows list them (the model's order). */
typedef struct names { const char **v; int n, cap; } names;
static int names_add(names *s, const char *n) {
    for (int i = 0; i < s->n; i++) if (strcmp(s->v[i], n) == 0) return i;
    if (!rep_grow((void **)&s->v, &s->cap, s->n, sizeof *s->v)) return -1;
    s->v[s->n] = n;
    return s->n++;
}

static int names_find(const names *s, const char *n) {
    for (int i = 0; i < s->n; i++) if (strcmp(s->v[i], n) == 0) return i;
    return -1;
}

static int dbl_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

static double target_of(const cJSON *t) {
    double v = rep_num(t, "target_sparsity");
    return isfinite(v) ? v : rep_num(t, "sparsity");
}

/* Per-layer weights remaining at the (up to) two highest target
 * sparsities: a layer pruned to nothing disconnects the network. */
static void layers(rf_buf *b, const cJSON *tasks) {
    names L = {0};
    double tg[64];
    int nt = 0;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const cJSON *lr = rep_get(t, "layer_remaining");
        if (!rep_done(t) || plot_of(t) != RF_PLOT_SPARSITY || !cJSON_IsObject(lr)) continue;
        for (const cJSON *c = lr->child; c; c = c->next) if (names_add(&L, c->string) < 0) goto out;
        double s = target_of(t);
        int k = 0;
        while (k < nt && fabs(tg[k] - s) > 1e-9) k++;
        if (k == nt && nt < 64 && isfinite(s)) tg[nt++] = s;
    }
    qsort(tg, (size_t)nt, sizeof *tg, dbl_desc);
    for (int k = 0; k < nt && k < 2; k++) {
        char title[160], cap[400];
        snprintf(title, sizeof title, "Per-layer weights remaining at %g%% sparsity (layer collapse)", tg[k] * 100);
        snprintf(cap, sizeof cap, "Each prunable layer's fraction of weights kept, log scale, mean over seeds. A cross on the "
                                  "bottom edge is a layer with nothing left: the network's output no longer depends on its "
                                  "input (layer collapse, Tanaka et al. 2020).");
        plot *p = plot_new(title, cap, (axis){.label = "prunable layer (input to output)", .unit = AX_CATEGORY, .cats = L.v, .ncats = L.n},
                           (axis){.label = "weights remaining in the layer", .log = 1, .unit = AX_PERCENT}, PL_LINES | PL_AGG);
        if (!p) break;
        for (const cJSON *t = tasks->child; t; t = t->next) {
            const cJSON *lr = rep_get(t, "layer_remaining");
            if (!rep_done(t) || plot_of(t) != RF_PLOT_SPARSITY || !cJSON_IsObject(lr) || fabs(target_of(t) - tg[k]) > 1e-9) continue;
            int si = plot_series(p, rep_str(t, "series"), 0);
            for (const cJSON *c = lr->child; c; c = c->next) {
                if (!cJSON_IsNumber(c)) continue;
                char g[600];
                snprintf(g, sizeof g, "%s, layer %s", rep_str(t, "group"), c->string);
                char tip[600];
                snprintf(tip, sizeof tip, "%s, layer %s", rep_str(t, "label"), c->string);
                plot_add(p, si, g, names_find(&L, c->string), c->valuedouble, t, tip);
            }
        }
        render(b, p);
    }
out:
    rf_free(L.v);
}

/* ---- lottery tickets ------------------------------------------------------------- */

static void lottery(rf_buf *b, const cJSON *tasks, int which) {
    axis x = {.label = "weights remaining (log scale)", .log = 1, .rev = 1, .unit = AX_PERCENT};
    axis y = which ? (axis){.label = "early-stop iteration", .unit = AX_PLAIN} : acc_axis();
    plot *p = plot_new(which ? "Lottery tickets: early-stop iteration vs weights remaining"
                             : "Lottery tickets: test accuracy vs weights remaining",
                       which ? "The training step of each round's best periodic evaluation (Frankle & Carbin 2019, Fig. 4); "
                               "mean ± std over seeds."
                             : "Iterative magnitude pruning with rewinding (imp) and its controls, one point per round, final "
                               "accuracy of the round's training (Frankle & Carbin 2019, Fig. 3); mean ± std over seeds.",
                       x, y, PL_LINES | PL_AGG);
    if (!p) return;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!rep_done(t) || plot_of(t) != RF_PLOT_LOTTERY) continue;
        plot_add(p, plot_series(p, rep_str(t, "series"), 0), rep_str(t, "group"), rep_num(t, "remaining"),
                 rep_num(t, which ? "best_iteration" : "accuracy"), t, rep_str(t, "label"));
    }
    render(b, p);
}

/* ---- distillation ---------------------------------------------------------------- */

/* refs (sets of rows) drawn across the temperature range [lo, hi] */
static void across(plot *p, const rows *R, const char *what, unsigned style, double lo, double hi) {
    for (int k = 0; k < R->n; k++) {
        const cJSON *d = R->v[k];
        char name[560], g[600];
        snprintf(name, sizeof name, "%s (%s)", rep_str(d, "series"), what);
        for (int e = 0; e < 2; e++) {
            snprintf(g, sizeof g, "%s @%d", rep_str(d, "group"), e);
            plot_add(p, plot_series(p, name, style), g, e ? hi : lo, rep_num(d, "accuracy"), d, rep_str(d, "label"));
        }
    }
}

static void distillation(rf_buf *b, const cJSON *tasks, const rep_index *ix) {
    plot *p = plot_new("Distillation: student test accuracy vs temperature",
                       "Students distilled at temperature T (Hinton et al. 2015), against their teacher (hollow) and the same "
                       "student trained alone (dashed), drawn across the range; mean ± std over seeds.",
                       (axis){.label = "temperature T", .unit = AX_PLAIN}, acc_axis(), PL_LINES | PL_AGG);
    if (!p) return;
    double lo = INFINITY, hi = -INFINITY;
    rows teachers = {0}, alone = {0};
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!rep_done(t) || plot_of(t) != RF_PLOT_DISTILL) continue;
        lo = fmin(lo, rep_num(t, "temperature"));
        hi = fmax(hi, rep_num(t, "temperature"));
        plot_add(p, plot_series(p, rep_str(t, "series"), 0), rep_str(t, "group"), rep_num(t, "temperature"), rep_num(t, "accuracy"), t,
                 rep_str(t, "label"));
        const cJSON *d = rep_done_parent(ix, t);
        if (d) rows_add(&teachers, d);
        /* the student alone: a dense model of the same sweep, experiment, model and seed */
        for (const cJSON *u = tasks->child; u; u = u->next)
            if (rep_done(u) && plot_of(u) == RF_PLOT_NONE && !is_diag(u) && u != d &&
                !strcmp(rep_str(u, "experiment"), rep_str(t, "experiment")) && !strcmp(rep_str(u, "model"), rep_str(t, "model")) &&
                rep_num(u, "seed") == rep_num(t, "seed") && !strcmp(rep_str(u, "sweep"), rep_str(t, "sweep")))
                rows_add(&alone, u);
    }
    rows_unique(&teachers);
    rows_unique(&alone);
    if (isfinite(lo)) {
        across(p, &teachers, "teacher", ST_REF | ST_DASHED | ST_HOLLOW, lo, hi);
        across(p, &alone, "student alone", ST_DASHED, lo, hi);
    }
    rf_free(teachers.v);
    rf_free(alone.v);
    render(b, p);
}

/* ---- quantization ------------------------------------------------------------------ */

static void quantization(rf_buf *b, const cJSON *tasks, const rep_index *ix) {
    plot *p = plot_new("Quantization: int8 models and their float parents",
                       "Each quantized model (Jacob et al. 2018: PTQ or QAT) is joined by a grey line to the float model it "
                       "was quantized from (hollow); x is the checkpoint's size on disk. One marker per task.",
                       (axis){.label = "checkpoint size on disk (log scale)", .log = 1, .unit = AX_BYTES}, acc_axis(), 0);
    if (!p) return;
    rows parents = {0};
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!rep_done(t) || plot_of(t) != RF_PLOT_QUANT) continue;
        double x = rep_num(t, "bytes"), y = rep_num(t, "accuracy");
        const cJSON *d = rep_done_parent(ix, t);
        /* coloured by what was quantized: "int8-ptq of synflow" */
        char name[200];
        snprintf(name, sizeof name, "%s%s%s", rep_str(t, "method"), d ? " of " : "", d ? rep_str(d, "method") : "");
        plot_add(p, plot_series(p, name, ST_NOLINE), rep_str(t, "id"), x, y, t, rep_str(t, "label"));
        if (!d) continue;
        rows_add(&parents, d);
        plot_link(p, rep_num(d, "bytes"), rep_num(d, "accuracy"), x, y);
    }
    rows_unique(&parents);
    for (int k = 0; k < parents.n; k++) {
        const cJSON *d = parents.v[k];
        plot_add(p, plot_series(p, "float parent", ST_REF | ST_HOLLOW | ST_NOLINE), rep_str(d, "id"), rep_num(d, "bytes"),
                 rep_num(d, "accuracy"), d, rep_str(d, "label"));
    }
    rf_free(parents.v);
    render(b, p);
}

/* ---- training curves ------------------------------------------------------------- */

/* "curve": [{"step", "loss" | "train_loss", "val_accuracy", "val_loss",
 * "test_accuracy", ...}] per evaluation. One pair of plots (accuracy, loss)
 * per experiment; a pruning experiment's at each of its two highest
 * sparsities, one line per method and setting, its dense models as the
 * reference. Lines are means over seeds at each step. */
static int has_curve(const cJSON *t) {
    const cJSON *c = rep_get(t, "curve");
    return rep_done(t) && cJSON_IsArray(c) && c->child;
}
static int same_exp(const cJSON *a, const cJSON *b) {
    return !strcmp(rep_str(a, "experiment"), rep_str(b, "experiment")) && !strcmp(rep_str(a, "sweep"), rep_str(b, "sweep"));
}

/* The rows of experiment e (a row of it) in one curve plot: at target
 * sparsity sp (NaN: the experiment has no pruned rows: all of them). */
static int in_curve_plot(const cJSON *t, const cJSON *e, double sp) {
    if (!has_curve(t) || !same_exp(t, e)) return 0;
    if (isnan(sp)) return 1;
    return plot_of(t) == RF_PLOT_NONE || (plot_of(t) == RF_PLOT_SPARSITY && fabs(target_of(t) - sp) < 1e-9);
}

static void curve_plot(rf_buf *b, const cJSON *tasks, const cJSON *e, double sp, int val, int which) {
    char title[400], where[300];
    if (isnan(sp)) snprintf(where, sizeof where, "%s", rep_str(e, "experiment"));
    else snprintf(where, sizeof where, "%s at %g%% sparsity", rep_str(e, "experiment"), sp * 100);
    snprintf(title, sizeof title, "Training curves, %s: %s", where, which ? "training loss" : val ? "validation accuracy" : "test accuracy");
    plot *p = plot_new(title,
                       isnan(sp) ? "Per evaluation during training, one line per method and setting (the task's label without its "
                                   "seed), the mean over seeds at each step."
                                 : "Per evaluation during training, one line per method and setting (the task's label without its "
                                   "seed), the mean over seeds at each step; the dense models in grey.",
                       (axis){.label = "training step", .unit = AX_PLAIN},
                       which ? (axis){.label = "training loss", .unit = AX_PLAIN}
                             : (axis){.label = val ? "validation accuracy" : "test accuracy", .unit = AX_PERCENT},
                       PL_LINES | PL_AGG);
    if (!p) return;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!in_curve_plot(t, e, sp)) continue;
        int ref = !isnan(sp) && plot_of(t) == RF_PLOT_NONE;
        int si = plot_series(p, rep_str(t, isnan(sp) ? "group" : "series"), ref ? ST_REF : 0);
        for (const cJSON *c = rep_get(t, "curve")->child; c; c = c->next) {
            double y = which ? rep_num(c, "loss") : rep_num(c, val ? "val_accuracy" : "test_accuracy");
            if (which && !isfinite(y)) y = rep_num(c, "train_loss");
            char g[600];
            snprintf(g, sizeof g, "%s @%.0f", rep_str(t, "group"), rep_num(c, "step"));
            plot_add(p, si, g, rep_num(c, "step"), y, t, rep_str(t, "label"));
        }
    }
    render(b, p);
}

static void curves(rf_buf *b, const cJSON *tasks) {
    int val = 0;
    for (const cJSON *t = tasks->child; t && !val; t = t->next)
        for (const cJSON *c = has_curve(t) ? rep_get(t, "curve")->child : NULL; c && !val; c = c->next)
            val = isfinite(rep_num(c, "val_accuracy"));
    enum { MAX_EXP = 256 };
    const cJSON *seen[MAX_EXP];
    int ns = 0;
    for (const cJSON *e = tasks->child; e && ns < MAX_EXP; e = e->next) {
        if (!has_curve(e)) continue;
        /* the experiment's first row with a curve stands for it */
        int k = 0;
        while (k < ns && !same_exp(seen[k], e)) k++;
        if (k < ns) continue;
        seen[ns++] = e;
        double tg[64];
        int nt = 0;
        for (const cJSON *t = tasks->child; t; t = t->next) {
            if (!has_curve(t) || !same_exp(t, e) || plot_of(t) != RF_PLOT_SPARSITY) continue;
            double s = target_of(t);
            int m = 0;
            while (m < nt && fabs(tg[m] - s) > 1e-9) m++;
            if (m == nt && nt < 64 && isfinite(s)) tg[nt++] = s;
        }
        qsort(tg, (size_t)nt, sizeof *tg, dbl_desc);
        if (!nt) tg[nt++] = NAN;
        for (k = 0; k < nt && k < 2; k++)
            for (int which = 0; which < 2; which++) curve_plot(b, tasks, e, tg[k], val, which);
    }
}

/* ---- every task: Pareto -------------------------------------------------------------- */

static void pareto_table(rf_buf *b, const plot *p, const char *what) {
    enum { MAX_MEMBERS = 200 };
    const cJSON *m[MAX_MEMBERS];
    int n = plot_frontier(p, m, MAX_MEMBERS);
    if (!n) return;
    rf_buf_printf(b, "<details class='members'><summary>Pareto frontier, %s: %d task%s</summary><table><tr><th>task</th><th>method</th>"
                     "<th>test accuracy</th><th>val accuracy</th><th>size on disk</th><th>compression</th><th>latency, batch 1 (ms)</th></tr>\n",
                  what, n, n == 1 ? "" : "s");
    for (int k = 0; k < n; k++) {
        const cJSON *t = m[k];
        rf_buf_printf(b, "<tr><td class='s'><a href='#t-");
        rep_html(b, rep_str(t, "sweep"));
        rf_buf_printf(b, "-");
        rep_html(b, rep_str(t, "id"));
        rf_buf_printf(b, "'>");
        rep_html(b, rep_str(t, "label"));
        rf_buf_printf(b, "</a></td><td class='s'>");
        rep_html(b, rep_str(t, "method"));
        rf_buf_printf(b, "</td>");
        static const struct { const char *key; rep_fmt f; } cols[] = {
            {"accuracy", F_PCT}, {"val_accuracy", F_PCT}, {"bytes", F_BYTES}, {"compression_ratio", F_RATIO}, {"latency_ms", F_G}};
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
            double v = rep_num(t, cols[c].key);
            rf_buf_printf(b, "<td>");
            if (isfinite(v)) rep_fmt_num(b, cols[c].f, v);
            rf_buf_printf(b, "</td>");
        }
        rf_buf_printf(b, "</tr>\n");
    }
    rf_buf_printf(b, "</table></details>\n");
}

static void pareto(rf_buf *b, const cJSON *tasks, int latency, int compare) {
    axis x = latency ? (axis){.label = "latency at batch 1, ms (best of repeated runs, log scale)", .log = 1, .unit = AX_PLAIN}
                     : (axis){.label = "checkpoint size on disk (log scale)", .log = 1, .unit = AX_BYTES};
    plot *p = plot_new(latency ? "Every task: test accuracy vs latency" : "Every task: test accuracy vs size",
                       latency ? "Batch-1 inference latency of the deployed model (sparse or int8 kernels where they won), "
                                 "timed on the machine that ran the task: compare within one engine (table above). One marker "
                                 "per task, coloured by method; the circled ones are on the Pareto frontier."
                               : "One marker per task, coloured by method; the circled ones are on the Pareto frontier: no other "
                                 "task is both smaller and more accurate.",
                       x, acc_axis(), PL_PARETO);
    if (!p) return;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!rep_done(t) || is_diag(t)) continue;
        char name[300];
        snprintf(name, sizeof name, "%s%s%s", compare ? rep_str(t, "sweep") : "", compare ? ": " : "", rep_str(t, "method"));
        char g[300];
        snprintf(g, sizeof g, "%s/%s", rep_str(t, "sweep"), rep_str(t, "id"));
        plot_add(p, plot_series(p, name, ST_NOLINE), g, rep_num(t, latency ? "latency_ms" : "bytes"), rep_num(t, "accuracy"), t,
                 rep_str(t, "label"));
    }
    rf_buf tb = {0};
    pareto_table(&tb, p, latency ? "accuracy vs latency" : "accuracy vs size");
    plot_render(b, p, tb.oom ? NULL : tb.p);
    rf_buf_free(&tb);
    plot_free(p);
}

void rep_plots(rf_buf *b, const cJSON *rep) {
    const cJSON *tasks = rep_get(rep, "tasks"), *sw = rep_get(rep, "sweeps");
    if (!cJSON_IsArray(tasks)) return;
    int compare = cJSON_GetArraySize(sw) > 1;
    rep_index ix;
    rep_index_build(&ix, tasks);
    if (has_plot(tasks, RF_PLOT_SPARSITY)) {
        pruning(b, tasks, &ix, 0);
        int flops = 0;
        for (const cJSON *t = tasks->child; t && !flops; t = t->next)
            flops = plot_of(t) == RF_PLOT_SPARSITY && rep_num(t, "flops") > 0 && rep_num(t, "dense_flops") > 0;
        if (flops) pruning(b, tasks, &ix, 1);
        layers(b, tasks);
    }
    if (has_plot(tasks, RF_PLOT_LOTTERY)) { lottery(b, tasks, 0); lottery(b, tasks, 1); }
    if (has_plot(tasks, RF_PLOT_DISTILL)) distillation(b, tasks, &ix);
    if (has_plot(tasks, RF_PLOT_QUANT)) quantization(b, tasks, &ix);
    curves(b, tasks);
    pareto(b, tasks, 0, compare);
    pareto(b, tasks, 1, compare);
    rep_index_free(&ix);
}
