/* Pruning at model level: which tensors are eligible (rf_param.prunable plus
 * a layer-name glob list), per-layer rates, method dispatch through the
 * method table (prune_methods.c),
 * per-tensor statistics, layer-collapse detection on the model's masks, the
 * gradual-magnitude-pruning training hook. (A task's settings keys are the
 * task layer's: src/task/task_prune.c.) */
#include "compress/prune_internal.h"
#include "raffle/lowbit.h"
#include "raffle/ckpt.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- eligibility ---------------------------------------------------------- */

/* Glob list: comma-separated fnmatch patterns over the param name
 * ("fc1.weight") or its layer's name ("fc1"); a leading '!' excludes. With no
 * positive pattern everything not excluded is selected. */
static int glob_match_one(const char *pat, size_t len, const char *a, const char *b) {
    char buf[256];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, pat, len);
    buf[len] = '\0';
    return fnmatch(buf, a, 0) == 0 || (b && fnmatch(buf, b, 0) == 0);
}

int rf_prune_glob_selects(const char *list, const char *pname, const char *lname) {
    if (!list || !*list) return 1;
    int any_pos = 0, pos_hit = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ') { p++; len--; }
        if (len) {
            int neg = *p == '!';
            const char *pat = p + neg;
            size_t plen = len - (size_t)neg;
            if (glob_match_one(pat, plen, pname, lname)) {
                if (neg) return 0;
                pos_hit = 1;
            }
            any_pos |= !neg;
        }
        p += len;
        if (*p == ',') p++;
    }
    return any_pos ? pos_hit : 1;
}

int rf_prune_glob_excludes(const char *list, const char *pname, const char *lname) {
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ') { p++; len--; }
        if (len > 1 && *p == '!' && glob_match_one(p + 1, len - 1, pname, lname)) return 1;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

double rf_prune_rate_for(const rf_prune_cfg *cfg, const char *pname, const char *lname) {
    for (int i = 0; i < cfg->n_layer_rates; i++) {
        const char *pat = cfg->rate_patterns[i];
        if (glob_match_one(pat, strlen(pat), pname, lname)) return cfg->rates[i];
    }
    return -1.0;
}

rf_status rf_prune_items(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg,
                         rf_prune_item **items, int *n_items) {
    *items = NULL;
    *n_items = 0;
    rf_prune_item *v = rf_calloc((size_t)(m->n_ptensors > 0 ? m->n_ptensors : 1), sizeof *v);
    if (!v) return rf_error(ctx, RF_ERR_NOMEM, "prune: item list");
    int n = 0;
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        const char *lname = (p->layer >= 0 && p->layer < m->n_layers) ? m->layers[p->layer].name : NULL;
        if (!p->prunable || !rf_prune_glob_selects(cfg->layers, p->name, lname)) continue;
        v[n].name = p->name;
        v[n].offset = p->offset;
        v[n].numel = p->numel;
        v[n].is_output = p->is_output;
        v[n].rate = rf_prune_rate_for(cfg, p->name, lname);
        n++;
    }
    if (n == 0) {
        rf_free(v);
        return rf_error(ctx, RF_ERR_INVALID, "prune: no prunable tensor matches layers \"%s\"", cfg->layers ? cfg->layers : "");
    }
    *items = v;
    *n_items = n;
    return RF_OK;
}

/* ---- dispatch: the method table (prune_methods.c) ------------------------------ */

static rf_status scores_into(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *it,
                             int n, const rf_dataset *train, float *sc) {
    const rf_prune_method_desc *d = rf_prune_method_get(cfg->method);
    if (!d) return rf_error(ctx, RF_ERR_INVALID, "prune: unknown method %d", cfg->method);
    if ((d->flags & RF_PM_DATA) && !train)
        return rf_error(ctx, RF_ERR_INVALID, "prune %s: needs training data", d->name);
    return d->score(ctx, m, cfg, it, n, train, sc);
}

rf_status rf_prune_scores(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg,
                          const rf_dataset *train, float **scores) {
    *scores = NULL;
    rf_prune_item *it;
    int n;
    RF_TRY(rf_prune_items(ctx, m, cfg, &it, &n));
    RF_TRY(rf_model_ensure_masks(ctx, m));
    float *sc = rf_calloc(m->n_params ? m->n_params : 1, sizeof *sc);
    if (!sc) { rf_free(it); return rf_error(ctx, RF_ERR_NOMEM, "prune: scores"); }
    rf_status s = scores_into(ctx, m, cfg, it, n, train, sc);
    rf_free(it);
    if (s != RF_OK) { rf_free(sc); return s; }
    *scores = sc;
    return RF_OK;
}

rf_status rf_prune_nm_parse(rf_ctx *ctx, const char *s, int *n, int *m) {
    int used = 0;
    *n = *m = 0;
    if (!s || sscanf(s, "%d:%d%n", n, m, &used) != 2 || s[used])
        return rf_error(ctx, RF_ERR_INVALID, "expected \"N:M\" such as \"2:4\", not \"%s\"", s ? s : "");
    if (*n < 1 || *m < 2 || *m > RF_NM_MAX_M) return rf_error(ctx, RF_ERR_INVALID, "\"%s\" needs N >= 1 and 2 <= M <= %d", s, RF_NM_MAX_M);
    if (*n > *m) return rf_error(ctx, RF_ERR_INVALID, "\"%s\" keeps N = %d of M = %d (N > M)", s, *n, *m);
    return RF_OK;
}

/* ---- N:M masks (raffle/lowbit.h) --------------------------------------------------
 * Each eligible tensor, viewed as rows (shape[0]) of K = numel / rows, keeps
 * the nm_n highest scores (lowest for RF_PM_HIGHEST methods) of every nm_m
 * consecutive weights of a row (rf_nm_select). Weights already pruned stay
 * pruned (they rank last), so a group that had fewer than nm_n left keeps
 * fewer: the result is checked per group to keep at most nm_n
 * (rf_nm_check), and exactly nm_n wherever the old mask allowed it. */
rf_status rf_prune_nm_masks(rf_ctx *ctx, rf_model *m, const rf_prune_item *it, int n, const float *sc, int highest,
                            int nm_n, int nm_m) {
    rf_status s = RF_OK;
    for (int i = 0; i < n && !s; i++) {
        const rf_param *p = rf_model_param(m, it[i].name);
        if (!p || p->offset != it[i].offset) return rf_error(ctx, RF_ERR_INTERNAL, "N:M: no tensor '%s'", it[i].name);
        const int64_t rows = p->shape[0], cols = (int64_t)(p->numel / (size_t)rows);
        if (cols % nm_m)
            return rf_error(ctx, RF_ERR_INVALID, "N:M %d:%d: M = %d does not divide the row length %lld of '%s' (exclude it with layers \"!%s\")",
                            nm_n, nm_m, nm_m, (long long)cols, p->name, m->layers[p->layer].name);
        float *v = rf_malloc(p->numel * sizeof(float));
        uint8_t *keep = rf_malloc(p->numel);
        if (!v || !keep) { rf_free(v); rf_free(keep); return rf_error(ctx, RF_ERR_NOMEM, "N:M: out of memory"); }
        for (size_t e = 0; e < p->numel; e++) {
            float x = sc[p->offset + e];
            v[e] = m->masks[p->offset + e] == 0.0f ? -INFINITY : highest ? -x : x;
        }
        s = rf_nm_select(ctx, v, rows, cols, nm_n, nm_m, keep);
        for (size_t e = 0; !s && e < p->numel; e++)
            if (!keep[e]) m->masks[p->offset + e] = 0.0f;
        for (size_t e = 0; !s && e < p->numel; e++) keep[e] = m->masks[p->offset + e] != 0.0f;
        if (!s) s = rf_nm_check(ctx, keep, rows, cols, nm_n, nm_m, 0);
        if (!s) {
            rf_param *q = &m->ptensors[p - m->ptensors];
            q->nm_n = rf_nm_check(ctx, keep, rows, cols, nm_n, nm_m, 1) == RF_OK ? nm_n : 0;
            q->nm_m = q->nm_n ? nm_m : 0;
            rf_ctx_clear(ctx);
        }
        if (s) rf_error_prefix(ctx, "%s", p->name);
        rf_free(v);
        rf_free(keep);
    }
    return s;
}

rf_status rf_prune_model(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_dataset *train) {
    rf_prune_item *it;
    int n;
    RF_TRY(rf_prune_items(ctx, m, cfg, &it, &n));
    rf_status s = rf_model_ensure_masks(ctx, m);
    const rf_prune_method_desc *d = rf_prune_method_get(cfg->method);
    if (s == RF_OK && !d) s = rf_error(ctx, RF_ERR_INVALID, "prune: unknown method %d", cfg->method);
    if (s == RF_OK && cfg->nm_m > 0 && (d->prune || (d->flags & RF_PM_STRUCT)))
        s = rf_error(ctx, RF_ERR_INVALID, "an N:M constraint (nm) takes a method that scores weights (magnitude, snip, ...), not %s", d->name);
    if (s == RF_OK && d->prune && (d->flags & RF_PM_DATA) && !train) {
        s = rf_error(ctx, RF_ERR_INVALID, "needs training data");
    } else if (s == RF_OK && d->prune) {
        s = d->prune(ctx, m, cfg, it, n, train);
    } else if (s == RF_OK) {
        float *sc = rf_calloc(m->n_params ? m->n_params : 1, sizeof *sc);
        if (!sc) s = rf_error(ctx, RF_ERR_NOMEM, "prune: scores");
        if (s == RF_OK) s = scores_into(ctx, m, cfg, it, n, train, sc);
        if (s == RF_OK && cfg->nm_m > 0) {
            /* output_rate 0 keeps the classifier dense (OFA's GMP); any other rate is the pattern's */
            int k = 0;
            for (int i = 0; i < n; i++)
                if (!(it[i].is_output && cfg->output_rate == 0.0)) it[k++] = it[i];
            s = rf_prune_nm_masks(ctx, m, it, k, sc, rf_prune_method_prunes_highest(cfg->method), cfg->nm_n, cfg->nm_m);
        } else if (s == RF_OK) {
            rf_prune_plan plan = {cfg->scope, cfg->sparsity, cfg->output_rate, cfg->of_remaining,
                                  rf_prune_method_prunes_highest(cfg->method)};
            s = rf_prune_select(ctx, it, n, sc, m->masks, &plan, NULL);
        }
        rf_free(sc);
    }
    rf_free(it);
    if (s == RF_OK) rf_model_apply_masks(m);
    else rf_error_prefix(ctx, "prune %s", rf_prune_method_name(cfg->method));
    return s;
}

/* ---- statistics and collapse -------------------------------------------------- */

rf_status rf_prune_stats(rf_ctx *ctx, const rf_model *m, rf_prune_layer_stat **stats, int *n,
                         size_t *kept_total, size_t *total) {
    *stats = NULL;
    *n = 0;
    rf_prune_layer_stat *v = rf_calloc((size_t)(m->n_ptensors > 0 ? m->n_ptensors : 1), sizeof *v);
    if (!v) return rf_error(ctx, RF_ERR_NOMEM, "prune: stats");
    size_t kt = 0, tt = 0;
    int c = 0;
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        if (!p->prunable) continue;
        snprintf(v[c].name, sizeof v[c].name, "%s", p->name);
        v[c].total = p->numel;
        size_t kept = p->numel;
        if (m->masks) {
            kept = 0;
            for (size_t e = 0; e < p->numel; e++) kept += m->masks[p->offset + e] != 0.0f;
        }
        v[c].kept = kept;
        kt += kept;
        tt += p->numel;
        c++;
    }
    *stats = v;
    *n = c;
    if (kept_total) *kept_total = kt;
    if (total) *total = tt;
    return RF_OK;
}

rf_status rf_prune_collapsed_layers(rf_ctx *ctx, const rf_model *m, cJSON *list, int *count) {
    if (count) *count = 0;
    if (!m->masks) return RF_OK;
    unsigned char *col = rf_malloc((size_t)(m->n_layers > 0 ? m->n_layers : 1));
    if (!col) return rf_error(ctx, RF_ERR_NOMEM, "collapse");
    rf_status s = rf_model_collapsed(ctx, m, m->masks, col);
    int c = 0;
    for (int li = 0; !s && li < m->n_layers; li++) {
        if (!col[li]) continue;
        if (!cJSON_AddItemToArray(list, cJSON_CreateString(m->layers[li].name))) s = rf_error(ctx, RF_ERR_NOMEM, "collapse");
        c++;
    }
    if (count && !s) *count = c;
    rf_free(col);
    return s;
}

/* ---- gradual magnitude pruning hook ---------------------------------------------- */

rf_status rf_gmp_init(rf_ctx *ctx, rf_gmp *g, const rf_prune_cfg *cfg, const rf_gmp_schedule *sched) {
    if (cfg->method != RF_PRUNE_MAGNITUDE)
        return rf_error(ctx, RF_ERR_INVALID, "gmp: method must be magnitude (Zhu & Gupta 2017), not %s", rf_prune_method_name(cfg->method));
    if (sched->every < 1 || sched->end < sched->start || !(sched->s_init >= 0 && sched->s_final <= 1 && sched->s_init <= sched->s_final))
        return rf_error(ctx, RF_ERR_INVALID, "gmp: need every >= 1, end >= start and 0 <= s_init <= s_final <= 1");
    if (cfg->nm_m > 0 && fabs(sched->s_final - (1.0 - (double)cfg->nm_n / cfg->nm_m)) > 1e-9)
        return rf_error(ctx, RF_ERR_INVALID, "gmp: final sparsity %g contradicts N:M %d:%d (1 - N/M = %g)", sched->s_final, cfg->nm_n,
                        cfg->nm_m, 1.0 - (double)cfg->nm_n / cfg->nm_m);
    if (cfg->n_layer_rates > 0 && (cfg->scope != RF_SCOPE_LAYER || cfg->nm_m > 0 || !(sched->s_final > 0)))
        return rf_error(ctx, RF_ERR_INVALID, "gmp: per-tensor rates need layer scope, no N:M and a final sparsity above 0");
    memset(g, 0, sizeof *g);
    g->ctx = ctx;
    g->cfg = *cfg;
    g->cfg.of_remaining = 0;
    g->sched = *sched;
    g->output_scale = 1.0;
    g->last = -1.0;
    return RF_OK;
}

rf_status rf_gmp_apply(rf_gmp *g, rf_model *m, int64_t step) {
    if (!rf_gmp_is_update_step(&g->sched, step)) {
        rf_model_apply_masks(m);
        return RF_OK;
    }
    double s = rf_gmp_sparsity(&g->sched, step);
    rf_prune_cfg c = g->cfg;
    c.sparsity = s;
    c.output_rate = g->output_scale == 1.0 ? -1.0 : g->output_scale * s;
    if (c.nm_m > 0) {
        /* gradual N:M: the schedule's sparsity s_t as N_t:M, N_t = M - floor(s_t M), from M:M (nothing pruned)
         * down to the final N:M, so every intermediate mask is itself N_t:M */
        int nt = c.nm_m - (int)floor(s * c.nm_m + 1e-9);
        c.nm_n = nt < g->cfg.nm_n ? g->cfg.nm_n : nt;
        if (c.nm_n >= c.nm_m) { rf_model_apply_masks(m); return RF_OK; }
    }
    /* Per-tensor final rates r (Deep Compression's per-layer rates): each
     * tensor follows the schedule scaled to its own rate, r·s_t/s_f (with
     * s_i = 0, the cubic schedule from 0 to r); the rest follow s_t. */
    double *scaled = NULL;
    if (c.n_layer_rates > 0) {
        scaled = rf_malloc((size_t)c.n_layer_rates * sizeof *scaled);
        if (!scaled) return rf_error(g->ctx, RF_ERR_NOMEM, "gmp step %lld: rates", (long long)step);
        for (int i = 0; i < c.n_layer_rates; i++) scaled[i] = g->cfg.rates[i] * (s / g->sched.s_final);
        c.rates = scaled;
    }
    rf_status st = rf_prune_model(g->ctx, m, &c, NULL);
    rf_free(scaled);
    if (st != RF_OK) { rf_error_prefix(g->ctx, "gmp step %lld", (long long)step); return st; }
    g->last = s;
    g->updates++;
    return RF_OK;
}

rf_status rf_gmp_before_step(void *ud, rf_model *m, int64_t step, int64_t total_steps) {
    return rf_gmp_apply((rf_gmp *)ud, m, step);
}

/* ---- task helpers -------------------------------------------------------------- */

rf_status rf_prune_report(rf_ctx *ctx, const rf_model *m, cJSON *metrics) {
    rf_prune_layer_stat *st = NULL;
    int n = 0;
    size_t kept = 0, total = 0;
    RF_TRY(rf_prune_stats(ctx, m, &st, &n, &kept, &total));
    cJSON *lr = cJSON_CreateObject();
    int ok = lr != NULL;
    for (int i = 0; i < n && ok; i++)
        ok = cJSON_AddNumberToObject(lr, st[i].name, st[i].total ? (double)st[i].kept / (double)st[i].total : 0.0) != NULL;
    rf_free(st);
    static const char *const keys[] = {"prunable", "remaining", "layer_remaining"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, keys[i]);
    ok = ok && cJSON_AddNumberToObject(metrics, "prunable", (double)total)
            && cJSON_AddNumberToObject(metrics, "remaining", total ? (double)kept / (double)total : 1.0);
    if (!ok || !cJSON_AddItemToObject(metrics, "layer_remaining", lr)) {
        if (!ok) cJSON_Delete(lr);
        return rf_error(ctx, RF_ERR_NOMEM, "prune report");
    }
    if (!cJSON_GetObjectItemCaseSensitive(metrics, "collapsed_layers")) {
        cJSON *list = cJSON_AddArrayToObject(metrics, "collapsed_layers");
        if (!list) return rf_error(ctx, RF_ERR_NOMEM, "prune report");
        RF_TRY(rf_prune_collapsed_layers(ctx, m, list, NULL));
    }
    return RF_OK;
}
