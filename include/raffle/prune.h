/* raffle prune: saliency scores, exact mask selection, gradual magnitude
 * pruning and lottery-ticket rewinding (docs/pruning.md).
 *
 * Two layers:
 *  - plain arrays (no model needed, unit-testable): a list of rf_prune_item
 *    views into flat score/mask arrays, and rf_prune_select, which prunes
 *    EXACTLY the requested count per ranking group, breaking ties by flat
 *    index; the cubic GMP schedule; connectivity (layer collapse) of a chain
 *    of masks;
 *  - model level: scores by method (the method table: magnitude, random,
 *    obd, snip, grasp, synflow, taylor) over model->params, written into
 *    model->masks (same offsets as params, rf_model_ensure_masks), and the
 *    before_step hook for gradual magnitude pruning that the OFA pipeline
 *    reuses.
 *
 * Mask convention: 1.0 kept, 0.0 pruned. A weight whose mask is already 0
 * counts as pruned and is never revived: iterative pruning removes a fraction
 * of what remains. */
#ifndef RAFFLE_PRUNE_H
#define RAFFLE_PRUNE_H

#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/nn.h"
#include "raffle/data.h"
#include "raffle/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- methods ----------------------------------------------------------------
 * One table (src/compress/prune_methods.c) of descriptors, one per method in
 * the file that implements it (rf_prune_method_desc below). A method is
 * stored by name (settings, metrics, job files), never by number; the enum
 * names the table positions of the methods that code asks for by name of
 * constant (lottery rounds and GMP are magnitude pruning, tests). A method
 * added later needs no enum value: it is found by name. */
typedef enum rf_prune_method {
    RF_PRUNE_MAGNITUDE = 0,  /* |w|                                                   */
    RF_PRUNE_RANDOM    = 1,  /* uniform scores from a Philox stream of the seed       */
    RF_PRUNE_OBD       = 2,  /* LeCun et al. 1990: ½·h_ii·w², h_ii = Fisher diagonal  */
    RF_PRUNE_SNIP      = 3,  /* Lee et al. 2019: |g ⊙ w| / Σ|g ⊙ w| on one batch      */
    RF_PRUNE_GRASP     = 4,  /* Wang et al. 2020: −w ⊙ Hg, prune the highest          */
    RF_PRUNE_SYNFLOW   = 5,  /* Tanaka et al. 2020, Alg. 1: data-free, iterative       */
} rf_prune_method;

typedef enum rf_prune_scope {
    RF_SCOPE_LAYER  = 0,     /* each tensor ranked on its own at its own rate        */
    RF_SCOPE_GLOBAL = 1,     /* all eligible tensors ranked together                 */
} rf_prune_scope;
/* Returns the scope for "layer"/"global", or -1. */
int rf_prune_scope_from_name(const char *name);

typedef struct rf_prune_cfg rf_prune_cfg;   /* below */

/* ---- plain-array selection ------------------------------------------------ */

/* One tensor to prune, a view into flat arrays (scores, mask, params). */
typedef struct rf_prune_item {
    const char *name;        /* borrowed; used in messages and reports           */
    size_t      offset;      /* first element in the flat arrays                 */
    size_t      numel;
    int         is_output;   /* classifier weights: may get their own rate       */
    double      rate;        /* layer scope only: this tensor's rate; < 0 = plan's */
} rf_prune_item;

/* How counts are derived. A ranking group is one item (layer scope) or all
 * items (global scope; with output_rate >= 0 the output items form a second
 * group). For a group of n eligible weights, p0 of them already pruned:
 *   of_remaining = 0: rate is a target sparsity; prune max(0, round(rate·n) − p0)
 *                     more, so the group ends with exactly round(rate·n) pruned;
 *   of_remaining = 1: rate is the fraction of the REMAINING weights to prune:
 *                     prune round(rate·(n − p0)) more (lottery-ticket rounds).
 * round() is half away from zero on the double product. */
typedef struct rf_prune_plan {
    rf_prune_scope scope;
    double sparsity;         /* rate of non-output items (and of outputs if output_rate < 0) */
    double output_rate;      /* rate of is_output items; < 0: same as sparsity, ranked with the rest */
    int    of_remaining;
    int    prune_highest;    /* 1: the highest scores go first (GraSP)           */
} rf_prune_plan;

/* Prunes (sets mask to 0.0) the lowest-scoring (highest with prune_highest)
 * still-kept entries of each ranking group: exactly the count above. Ties are
 * broken by flat index, lower index pruned first, so the mask is a pure
 * function of (scores, mask, plan). Scores of already-pruned entries are
 * ignored. scores and mask are borrowed; mask is updated in place.
 * *n_pruned (may be NULL) gets the number of entries newly pruned.
 * Errors: RF_ERR_INVALID (rate outside [0, 1], overlapping items),
 * RF_ERR_NAN (a NaN score among kept entries), RF_ERR_NOMEM. */
rf_status rf_prune_select(rf_ctx *ctx, const rf_prune_item *items, int n_items,
                          const float *scores, float *mask, const rf_prune_plan *plan,
                          size_t *n_pruned);

/* Saliency kernels on flat arrays (out[i] for i < n; out may not alias).
 * Larger = more important, except GraSP, whose highest scores are pruned. */
void rf_prune_score_magnitude(const float *w, size_t n, float *out);           /* |w|             */
void rf_prune_score_obd(const float *w, const float *h, size_t n, float *out);  /* ½·h·w² (OBD, LeCun et al. 1990) */
void rf_prune_score_snip(const float *w, const float *g, size_t n, float *out);  /* |g·w| (SNIP, Lee et al. 2019, unnormalised) */
void rf_prune_score_grasp(const float *w, const float *hg, size_t n, float *out);/* −w·(Hg) (GraSP, Wang et al. 2020) */
void rf_prune_score_synflow(const float *w, const float *g, size_t n, float *out);/* |w·∂R/∂w| (SynFlow eq. 1) */
/* Uniform [0, 1) scores from the Philox stream (seed, stream): element i
 * gets the i-th draw, so the scores do not depend on anything else. */
void rf_prune_score_random(uint64_t seed, uint64_t stream, size_t n, float *out);

/* Random mask with exactly the same number of kept entries per item as the
 * given mask (the lottery "random pruning" control, Frankle & Carbin 2019
 * §2): each item's kept positions are a uniform random subset drawn from the
 * Philox stream (seed, stream). mask is updated in place. */
rf_status rf_prune_random_like(rf_ctx *ctx, const rf_prune_item *items, int n_items,
                               float *mask, uint64_t seed, uint64_t stream);

/* Counts zeros of mask over the items: *pruned of *total (either may be NULL). */
void rf_prune_count(const rf_prune_item *items, int n_items, const float *mask,
                    size_t *pruned, size_t *total);

/* ---- gradual magnitude pruning (Zhu & Gupta 2017, eq. 1) -------------------
 *   s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(n·Δt))³,  t ∈ {t0, t0+Δt, …, t0+n·Δt}
 * with n·Δt = end − start. Before `start` the schedule is s_i; from `end` on
 * it is s_f; between updates it holds the value of the last update step. */
typedef struct rf_gmp_schedule {
    double  s_init, s_final;
    int64_t start, end, every;  /* t0, t0 + n·Δt, Δt (every >= 1, end >= start) */
} rf_gmp_schedule;
/* Target sparsity at `step` (pure function). */
double rf_gmp_sparsity(const rf_gmp_schedule *s, int64_t step);
/* 1 if masks are to be recomputed before `step`: start <= step <= end and
 * (step − start) is a multiple of every. */
int    rf_gmp_is_update_step(const rf_gmp_schedule *s, int64_t step);
/* The schedule of a run of `total` steps, its times as fractions of the
 * run: t0 = round(start_fraction·total), Δt = max(1, round(every_fraction·
 * total)), the target at end_fraction·total rounded down to t0 plus a whole
 * number of Δt (at least one), so s_final is reached on an update step. */
void   rf_gmp_schedule_for_run(double s_init, double s_final, int64_t total, double start_fraction, double end_fraction,
                               double every_fraction, rf_gmp_schedule *s);

/* ---- model level ---------------------------------------------------------- */

/* Which weights are eligible and at what rate (shared by every method). */
struct rf_prune_cfg {
    int      method;          /* index into the method table (rf_prune_method for built-ins) */
    rf_prune_scope  scope;
    double   sparsity;        /* see rf_prune_plan                                   */
    double   output_rate;     /* < 0: same as sparsity (and ranked with the rest)     */
    int      of_remaining;    /* rates are fractions of the remaining weights          */
    const char *layers;       /* borrowed glob list "fc*,!fc3*" over param and layer names; NULL = all prunable */
    int      n_layer_rates;   /* per-layer rates: first matching pattern wins          */
    const char *const *rate_patterns; /* borrowed [n_layer_rates]                      */
    const double *rates;      /* borrowed [n_layer_rates]                              */
    uint64_t seed;            /* random scores, data batches                          */
    int      batches;         /* obd / grasp / taylor: number of batches (default 10) */
    int      batch;           /* obd / snip / grasp batch size (default 128)          */
    int      synflow_rounds;  /* default 100                                          */
    double   grasp_eps;       /* finite-difference step, relative (default 3e-3)      */
    /* N:M constraint (raffle/lowbit.h; 0: none): every group of nm_m
     * consecutive weights of a row keeps nm_n, chosen by the method's
     * scores (magnitude, snip, ..., and gradual magnitude pruning). The
     * sparsity is then 1 - nm_n/nm_m; scope and rates do not apply, except
     * output_rate 0, which leaves the output layer dense. */
    int      nm_n, nm_m;
};
void rf_prune_cfg_default(rf_prune_cfg *c);
/* Parses an N:M setting "N:M" (e.g. "2:4") into *n, *m: RF_ERR_INVALID
 * for another form, N < 1, M < 2 or M > 64, and N > M. */
rf_status rf_prune_nm_parse(rf_ctx *ctx, const char *s, int *n, int *m);

/* ---- the method table -----------------------------------------------------------
 * What a method is: its name, what it needs, the settings it reads, and its
 * score. rf_prune_model runs any method the same way: items, scores, exact
 * selection (or the method's own prune function, SynFlow's rounds). Adding a
 * method is its file with one descriptor and one entry in the table
 * (CONTRIBUTING.md). */
enum {   /* rf_prune_method_desc.flags */
    RF_PM_DATA    = 1 << 0,  /* reads batches of the training set (train != NULL)          */
    RF_PM_GRAD    = 1 << 1,  /* needs loss gradients: a forward and a backward per batch   */
    RF_PM_AT_INIT = 1 << 2,  /* designed to prune at initialisation (prune at_init)         */
    RF_PM_HIGHEST = 1 << 3,  /* prunes the highest scores (GraSP)                           */
    RF_PM_LAYER   = 1 << 4,  /* supports per-layer ranking (scope "layer")                  */
    RF_PM_GLOBAL  = 1 << 5,  /* supports one global ranking (scope "global")                */
    /* Structured methods (src/compress/struct.c): they remove whole units,
     * so the pruned model can be sliced into a smaller dense one
     * (rf_model_slice); sparsity is the fraction of units removed. */
    RF_PM_CHANNELS = 1 << 6, /* removes output channels of conv2d layers (filters)          */
    RF_PM_NEURONS  = 1 << 7, /* removes output features of linear layers (neurons)          */
    RF_PM_BNSCALE  = 1 << 8, /* ranks units by their batch norms' scale (each needs one)    */
    RF_PM_HEADS    = 1 << 9, /* removes attention heads of attention / transformer layers   */
};
#define RF_PM_STRUCT (RF_PM_CHANNELS | RF_PM_NEURONS | RF_PM_HEADS)
/* Fills scores[offset..offset+numel) of every item (scores has n_params
 * entries, zero elsewhere). Larger = keep, unless RF_PM_HIGHEST. m may be
 * used for forwards and backwards but is left as found. */
typedef rf_status (*rf_prune_score_fn)(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                                       int n_items, const rf_dataset *train, float *scores);
/* A method that selects by itself (m's masks updated and applied); train
 * as for the score (NULL unless RF_PM_DATA). */
typedef rf_status (*rf_prune_apply_fn)(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                                       int n_items, const rf_dataset *train);
typedef struct rf_prune_method_desc {
    const char        *name;      /* settings "method" */
    const char        *summary;   /* the score and its source, one line (docs)             */
    unsigned           flags;     /* RF_PM_*                                               */
    const char *const *keys;      /* the pruning settings it reads besides the common ones
                                   * (synflow_rounds, obd_batches), NULL-terminated; NULL: none */
    rf_prune_score_fn  score;
    rf_prune_apply_fn  prune;     /* NULL: score, then rf_prune_select                     */
} rf_prune_method_desc;

/* Methods in the table; the descriptor of method m (NULL out of range). */
int                          rf_prune_method_count(void);
const rf_prune_method_desc  *rf_prune_method_get(int m);
/* Returns the static name ("magnitude", ...), or "?" if out of range. */
const char *rf_prune_method_name(int m);
/* Returns the method for a name, or -1 if unknown. */
int         rf_prune_method_from_name(const char *name);
/* Comma-separated list of method names, and the names as a NULL-terminated
 * array (both static). */
const char *rf_prune_method_names(void);
const char *const *rf_prune_method_list(void);
/* Whether method m reads pruning setting `key` (its descriptor's keys). */
int         rf_prune_method_reads(int m, const char *key);

/* Returns the number of eligible tensors and fills *items with a new array
 * (rf_free) of views of m's prunable params matching cfg->layers, each with
 * its per-layer rate. Error RF_ERR_INVALID if none match. */
rf_status rf_prune_items(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg,
                         rf_prune_item **items, int *n_items);

/* Scores of method cfg->method for every eligible weight: returns a new
 * [m->n_params] array (rf_free), zero outside eligible tensors. Data methods
 * (obd, snip, grasp) read batches of `train` (borrowed; NULL is an error for
 * them). Larger = keep, except GraSP (see rf_prune_method_prunes_highest).
 * SynFlow's single-round score is returned here (rf_prune_model iterates). */
rf_status rf_prune_scores(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg,
                          const rf_dataset *train, float **scores);
int rf_prune_method_prunes_highest(int m);

/* One-shot pruning of m: ensures masks, scores, selects, applies masks to
 * params. SynFlow runs cfg->synflow_rounds rounds with the exponential
 * schedule s_k = 1 − (1 − s)^(k/R) (Alg. 1). train may be NULL for
 * magnitude, random and synflow. */
rf_status rf_prune_model(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_dataset *train);

/* For a structured method (RF_PM_STRUCT): RF_OK when some layer of m that
 * cfg->layers selects can lose units, RF_ERR_INVALID naming the layer when
 * `layers` names one the method cannot slice (the logits, a layer read by a
 * transformer block, a linear layer for filter_l1, a layer without heads
 * for head, ...), or when none can. Other methods: RF_OK. Job validation
 * and the prune task run it before any work. m is borrowed. */
rf_status rf_prune_struct_check(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg);

/* Per-tensor report of the current masks over m's prunable params. */
typedef struct rf_prune_layer_stat {
    char   name[RF_NAME_MAX];
    size_t total, kept;
} rf_prune_layer_stat;
/* Returns a new array (rf_free) of stats for every prunable param, with
 * *n entries; *kept_total / *total over all of them (either may be NULL). */
rf_status rf_prune_stats(rf_ctx *ctx, const rf_model *m, rf_prune_layer_stat **stats, int *n,
                         size_t *kept_total, size_t *total);

/* Names of collapsed layers of m's mask (Tanaka et al. 2020; nn.h
 * rf_model_collapsed): prunable tensors left with no weight, and linear/conv
 * layers with no kept weight on an input→output path, over every branch.
 * Adds the names (strings) to `list`, a cJSON array owned by the caller.
 * Returns the number added via *count (may be NULL). */
rf_status rf_prune_collapsed_layers(rf_ctx *ctx, const rf_model *m, cJSON *list, int *count);

/* Gradual magnitude pruning as a training hook. Fill cfg/schedule, call
 * rf_gmp_init, and pass rf_gmp_before_step with the rf_gmp as ud in
 * rf_train_hooks (or call rf_gmp_apply from a composite hook). Masks are
 * recomputed by |w| at each update step to the schedule's absolute target:
 * pruned weights stay pruned. ctx is borrowed for error detail. */
typedef struct rf_gmp {
    rf_ctx          *ctx;      /* borrowed */
    rf_prune_cfg     cfg;      /* method must be magnitude; sparsity/output_rate are ignored; per-tensor
                                  rates (layer scope, no N:M, s_final > 0) are final rates r, each tensor
                                  pruned to r·s_t/s_final at step t; cfg's rate arrays stay borrowed */
    rf_gmp_schedule  sched;
    double           output_scale; /* output tensors' target = output_scale · s_t (1: same, 0: not pruned) */
    double           last;     /* sparsity of the last update (-1 before the first) */
    int64_t          updates;  /* mask updates done */
} rf_gmp;
rf_status rf_gmp_init(rf_ctx *ctx, rf_gmp *g, const rf_prune_cfg *cfg, const rf_gmp_schedule *sched);
/* Recomputes masks if `step` is an update step; applies them to params. */
rf_status rf_gmp_apply(rf_gmp *g, rf_model *m, int64_t step);
/* rf_train_hooks.before_step adapter: ud is an rf_gmp*. */
rf_status rf_gmp_before_step(void *ud, rf_model *m, int64_t step, int64_t total_steps);

/* Adds the pruning report of m to metrics (a cJSON object owned by the
 * caller): "prunable", "remaining" (fraction of prunable weights kept),
 * "layer_remaining" {param: fraction}, and "collapsed_layers" unless the
 * object already has that key (rf_task_finish fills it). */
rf_status rf_prune_report(rf_ctx *ctx, const rf_model *m, cJSON *metrics);

/* ---- lottery tickets ---------------------------------------------------------
 * Rewind kinds (Frankle & Carbin 2019; Frankle et al. 2020; Renda et al. 2020). */
typedef enum rf_rewind_kind {
    RF_REWIND_INIT = 0,      /* weights at initialisation (rf_model_init(seed))      */
    RF_REWIND_STEP = 1,      /* weights after K steps (rewind.rckpt of round 0)      */
    RF_REWIND_LR   = 2,      /* keep trained weights, replay the LR schedule         */
} rf_rewind_kind;
/* Parses "init", "step:K" (K >= 0), "lr". */
rf_status rf_rewind_parse(rf_ctx *ctx, const char *s, rf_rewind_kind *kind, int64_t *k);

/* Copies the values of `from` (same architecture) into m for every entry
 * whose mask in m is kept, and zeros the pruned ones: the survivors take
 * their rewind values exactly. Buffers (BN statistics) are copied too. */
rf_status rf_lottery_rewind(rf_ctx *ctx, rf_model *m, const rf_model *from);

#ifdef __cplusplus
}
#endif
#endif
