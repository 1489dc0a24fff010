/* raffle engine options: how the compute engine runs, as explicit
 * parameters of the context (CONTRIBUTING.md rule 14, zstd's
 * ZSTD_CCtx_setParameter), never process statics filled from the
 * environment.
 *
 * Some options change floats (the convolution path, the GEMM backend, the
 * transformer chunking, feature-major runs: each sums in its own order), so
 * every task records the effective value of every option in its
 * metrics.json ("engine"), and a job or the command line sets them
 * explicitly ("engine": {...}, --engine KEY=VALUE). Options that do not
 * change floats (changes_floats = 0: the thread count) belong to the
 * process that runs a task, not to the task: they are never part of a
 * task's settings (its id, its checkpoint), a job sets them under "limits"
 * and the command line with their own flag (--threads). An environment variable
 * may only set an option's default (RAFFLE_CONV=gemm); rf_ctx_init reads
 * the defaults once and the options travel in rf_ctx.engine from there.
 *
 * One table, rf_engine_options, indexed by rf_engine_opt (the enum is in
 * core.h, since rf_ctx holds the values): name, environment variable,
 * values, default, doc. Adding an option is one enum value plus one table
 * entry (a static_assert checks the count); the table drives parsing, the
 * job and command-line checks, docs/engine.md and the metrics. */
#ifndef RAFFLE_ENGINE_H
#define RAFFLE_ENGINE_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_engine_option {
    const char *name;            /* key in "engine" objects and --engine KEY=VALUE */
    const char *env;             /* environment variable that sets the default     */
    const char *const *values;   /* value names, NULL-terminated (value = index); NULL: an integer */
    int         lo, hi;          /* integer options: bounds                        */
    int         def;             /* built-in default (an index into values, or the integer) */
    int         changes_floats;  /* 1: results depend on it (recorded, part of a task's settings) */
    const char *doc;             /* one line                                       */
} rf_engine_option;

extern const rf_engine_option rf_engine_options[RF_ENGINE_COUNT_];

/* Value names of the options (indices are the stored values). */
typedef enum { RF_ENGINE_ISA_AUTO = 0 } rf_engine_isa_value;   /* then scalar, avx2, ... = rf_isa + 1 */
typedef enum { RF_ENGINE_CONV_AUTO = 0, RF_ENGINE_CONV_WINOGRAD, RF_ENGINE_CONV_DIRECT, RF_ENGINE_CONV_GEMM, RF_ENGINE_CONV_DENSE, RF_ENGINE_CONV_WINOGRAD4,
               RF_ENGINE_CONV_AUTO2, RF_ENGINE_CONV_AUTO3 } rf_engine_conv_value;
/* What "auto" does with Winograd layers in this build, recorded in every
 * task's metrics (engine.conv_auto): the rule changed floats in session 4
 * ("auto2" keeps the earlier one). "auto3": auto's rule, plus the
 * backward (weight and input gradient) of stride-2 convs on the direct
 * kernels over the phase-split input (a different weight-gradient sum
 * order, so its own value); the default since session 6 (faster on
 * ResNets; the other presets have no stride-2 convs: same bits). "auto"
 * keeps its meaning and bits (stride-2 backward on im2col). */
#define RF_ENGINE_CONV_AUTO_RULE "winograd4 on maps up to 28x28 outputs, winograd above"
typedef enum { RF_ENGINE_GEMM_RAFFLE = 0, RF_ENGINE_GEMM_OPENBLAS } rf_engine_gemm_value;
typedef enum { RF_ENGINE_FEAT_OFF = 0, RF_ENGINE_FEAT_RULE, RF_ENGINE_FEAT_ALWAYS } rf_engine_feat_value;
/* Batch norm's training statistics (src/nn/layer_norm.c): twopass sums the
 * mean, then the centred squares (two reads of the input); onepass sums
 * x − K and (x − K)² in one read, K the channel's first element (shifted
 * sums, in double; the default since session 6, measured faster on
 * resnet-20). The two give different floats (rarely: both sum in double
 * before rounding to float). */
typedef enum { RF_ENGINE_BN_TWOPASS = 0, RF_ENGINE_BN_ONEPASS } rf_engine_bn_value;

/* Index of the option named `name`, or -1. */
int       rf_engine_option_find(const char *name);
/* The built-in defaults (no environment), no pool or GEMM attached. */
void      rf_engine_builtin(rf_engine *e);
/* Threads a task runs with: the option "threads", or when it is 0 (auto)
 * SLURM_CPUS_PER_TASK under Slurm, else 1 (rf_pool_default_threads). */
int       rf_engine_threads(const rf_engine *e);
/* The built-in defaults overridden by each option's environment variable.
 * A variable with a value the option does not take is an error naming the
 * variable (RF_ERR_INVALID); e keeps the built-in value for it. */
rf_status rf_engine_from_env(rf_ctx *ctx, rf_engine *e);
/* Parses VALUE for option opt: a value name, or (integer options) a
 * decimal integer in [lo, hi]; named options also take their index. */
rf_status rf_engine_parse_value(rf_ctx *ctx, int opt, const char *value, int *out);
/* Sets option `key` of e from text: "conv", "winograd". */
rf_status rf_engine_set(rf_ctx *ctx, rf_engine *e, const char *key, const char *value);
/* Parses "KEY=VALUE" (the --engine flag) into e. */
rf_status rf_engine_set_kv(rf_ctx *ctx, rf_engine *e, const char *kv);
/* The value of option opt in e as text ("winograd", "256") into buf. */
const char *rf_engine_value_text(const rf_engine *e, int opt, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
