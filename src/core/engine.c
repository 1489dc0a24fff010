/* The engine options table (raffle/engine.h): parsing, defaults from the
 * environment, and the one place the environment variable names live. */
#include "raffle/engine.h"
#include "raffle/threads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const isa_values[] = {"auto", "scalar", "avx2", "avx512novnni", "avx512novbmi", "avx512", NULL};
static const char *const conv_values[] = {"auto", "winograd", "direct", "gemm", "dense", "winograd4", "auto2", "auto3", NULL};
static const char *const gemm_values[] = {"raffle", "openblas", NULL};
static const char *const feat_values[] = {"off", "rule", "always", NULL};
static const char *const bn_values[] = {"twopass", "onepass", NULL};

const rf_engine_option rf_engine_options[RF_ENGINE_COUNT_] = {
    [RF_ENGINE_ISA] = {"isa", "RAFFLE_ISA", isa_values, 0, 0, RF_ENGINE_ISA_AUTO, 1,
                       "highest instruction set the kernels may use; auto: the best this CPU has (never above it)"},
    [RF_ENGINE_CONV] = {"conv", "RAFFLE_CONV", conv_values, 0, 0, RF_ENGINE_CONV_AUTO3, 1,
                        "convolution path: auto3 (the default since session 6) is auto plus the backward of stride-2 convs with 9 or more output channels and fewer than 32768 weights on the direct kernels; auto picks per layer shape, never by ISA (Winograd layers: F(4x4,3x3) on maps up to 28x28, F(2x2,3x3) above; stride-2 backward on im2col: the default before session 6, its bits); auto2: the rule before F(4x4) (F(2x2,3x3) on every Winograd layer); the others force one where it fits (winograd: F(2x2,3x3), winograd4: F(4x4,3x3))"},
    [RF_ENGINE_GEMM] = {"gemm", "RAFFLE_GEMM", gemm_values, 0, 0, RF_ENGINE_GEMM_RAFFLE, 1,
                        "dense products of the layers: raffle's GEMM (the same bits on every ISA and thread count), or OpenBLAS sgemm (bits depend on its kernels; for comparisons)"},
    [RF_ENGINE_TB_CHUNK] = {"tb_chunk", "RAFFLE_TB_CHUNK", NULL, 0, 1 << 24, 256, 1,
                            "token rows per chunk of the transformer block's chunked path (0: off)"},
    [RF_ENGINE_FEAT_RUNS] = {"feat_runs", "RAFFLE_FEAT_RUNS", feat_values, 0, 0, RF_ENGINE_FEAT_RULE, 1,
                             "feature-major runs in deployed inference: off, where the measured rule says they pay, or always"},
    [RF_ENGINE_THREADS] = {"threads", "RAFFLE_THREADS", NULL, 0, RF_POOL_MAX, 0, 0,
                           "compute threads of a task (0: SLURM_CPUS_PER_TASK under Slurm, else 1); results do not depend on it, so it is the process's, not a task setting (job: the top-level engine.threads)"},
    [RF_ENGINE_BN] = {"bn", "RAFFLE_BN", bn_values, 0, 0, RF_ENGINE_BN_ONEPASS, 1,
                      "batch norm's training statistics: onepass (shifted sums of x and x squared in double, one read of the input; the default since session 6), twopass (the mean, then the centred squares: two reads; the bits before session 6)"},
};
_Static_assert(sizeof rf_engine_options / sizeof rf_engine_options[0] == RF_ENGINE_COUNT_,
               "every engine option needs its table entry");

int rf_engine_option_find(const char *name) {
    for (int i = 0; name && i < RF_ENGINE_COUNT_; i++)
        if (strcmp(rf_engine_options[i].name, name) == 0) return i;
    return -1;
}

void rf_engine_builtin(rf_engine *e) {
    memset(e, 0, sizeof *e);
    for (int i = 0; i < RF_ENGINE_COUNT_; i++) e->v[i] = rf_engine_options[i].def;
}

int rf_engine_threads(const rf_engine *e) {
    int t = e->v[RF_ENGINE_THREADS];
    return t > 0 ? t : rf_pool_default_threads();
}

rf_status rf_engine_parse_value(rf_ctx *ctx, int opt, const char *value, int *out) {
    if (opt < 0 || opt >= RF_ENGINE_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "engine: option %d does not exist", opt);
    const rf_engine_option *o = &rf_engine_options[opt];
    if (!value || !*value) return rf_error(ctx, RF_ERR_INVALID, "engine option %s: empty value", o->name);
    int n = 0;
    if (o->values) {
        for (; o->values[n]; n++)
            if (strcmp(o->values[n], value) == 0) { *out = n; return RF_OK; }
    }
    long lo = o->values ? 0 : o->lo, hi = o->values ? n - 1 : o->hi;
    int64_t v;
    if (rf_parse_i64(NULL, value, strlen(value), lo, hi, o->name, &v) == RF_OK) { *out = (int)v; return RF_OK; }
    if (o->values) {
        char list[256];
        size_t k = 0;
        list[0] = '\0';
        for (int i = 0; o->values[i] && k + 1 < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", o->values[i]);
        return rf_error(ctx, RF_ERR_INVALID, "engine option %s: \"%s\" is not one of %s", o->name, value, list);
    }
    return rf_error(ctx, RF_ERR_INVALID, "engine option %s: \"%s\" is not an integer in [%d, %d]", o->name, value, o->lo, o->hi);
}

rf_status rf_engine_from_env(rf_ctx *ctx, rf_engine *e) {
    rf_engine_builtin(e);
    rf_status first = RF_OK;
    for (int i = 0; i < RF_ENGINE_COUNT_; i++) {
        const char *v = getenv(rf_engine_options[i].env);
        if (!v || !*v) continue;
        rf_ctx tmp;
        memset(&tmp, 0, sizeof tmp);
        int x;
        if (rf_engine_parse_value(&tmp, i, v, &x) == RF_OK) e->v[i] = x;
        else if (first == RF_OK) first = rf_error(ctx, RF_ERR_INVALID, "%s=%s: %s", rf_engine_options[i].env, v, tmp.err);
    }
    return first;
}

rf_status rf_engine_set(rf_ctx *ctx, rf_engine *e, const char *key, const char *value) {
    int o = rf_engine_option_find(key);
    if (o < 0) {
        char list[256];
        size_t k = 0;
        list[0] = '\0';
        for (int i = 0; i < RF_ENGINE_COUNT_ && k + 1 < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", rf_engine_options[i].name);
        return rf_error(ctx, RF_ERR_INVALID, "engine: unknown option \"%s\" (%s)", key ? key : "", list);
    }
    return rf_engine_parse_value(ctx, o, value, &e->v[o]);
}

rf_status rf_engine_set_kv(rf_ctx *ctx, rf_engine *e, const char *kv) {
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv) return rf_error(ctx, RF_ERR_INVALID, "engine: expected KEY=VALUE, got \"%s\"", kv ? kv : "");
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    return rf_engine_set(ctx, e, key, eq + 1);
}

const char *rf_engine_value_text(const rf_engine *e, int opt, char *buf, size_t n) {
    const rf_engine_option *o = &rf_engine_options[opt];
    if (o->values) snprintf(buf, n, "%s", o->values[e->v[opt]]);
    else snprintf(buf, n, "%d", e->v[opt]);
    return buf;
}
