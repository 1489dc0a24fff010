/* The report: grouping (only seeds are averaged; a grid over scope x
 * finetune.lr is four lines), the varied settings as columns, the fields
 * the pipelines phase adds (target sparsity, per-layer sparsity, FLOPs,
 * accuracy before fine-tuning, training curves, validation/test splits,
 * quantized models of pruned parents), comparisons of sweeps, and the plot
 * engine's ticks, means and legends. Fixture stores are written here: a job,
 * a ledger and a metrics.json per task whose numbers are set from the
 * task's settings, so every expected mean is worked out by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/report.h"
#include "job_test_util.h"
#include "report/report_internal.h"

static char root[256];

static void setup(void) {
    snprintf(root, sizeof root, "/tmp/raffle-test-report-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}
static void teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}
TestSuite(report, .init = setup, .fini = teardown);

typedef void (*metrics_fn)(const rf_job *j, int i, const cJSON *settings, cJSON *m);

/* Writes store root/name: job.json (when text is given), for every task a
 * metrics.json from fill and a "done" ledger line. */
static rf_store *make_store(const char *name, const char *text, const rf_job *j, metrics_fn fill) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s;
    cr_assert_eq(rf_store_open(&ctx, root, name, 1, &s), RF_OK, "%s", ctx.err);
    if (text) cr_assert_eq(rf_store_write(&ctx, s, "job.json", text, strlen(text)), RF_OK);
    for (int i = 0; i < j->n_tasks; i++) {
        cJSON *set = cJSON_Parse(rf_job_settings(j, i)), *m = cJSON_CreateObject();
        fill(j, i, set, m);
        char *txt = cJSON_PrintUnformatted(m), rel[96], hx[17];
        rf_store_task_rel(rel, sizeof rel, j->tasks[i].id, "metrics.json");
        cr_assert_eq(rf_store_write(&ctx, s, rel, txt, strlen(txt)), RF_OK, "%s", ctx.err);
        free(txt);
        rf_job_id_hex(j->tasks[i].id, hx);
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddStringToObject(ev, "event", "done");
        cJSON_AddStringToObject(ev, "task", hx);
        cr_assert_eq(rf_store_ledger_append(&ctx, s, ev, 0), RF_OK);
        cJSON_Delete(ev);
        cJSON_Delete(m);
        cJSON_Delete(set);
    }
    return s;
}

static rf_job *parse(const char *txt) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    cr_assert_eq(rf_job_parse(&ctx, txt, strlen(txt), "t", &j), RF_OK, "%s", ctx.err);
    return j;
}

static const char *sget(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}
static double nget(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* ---- a grid over a non-seed key ---------------------------------------------- */

#define GRID_JOB "{\"name\":\"grid\",\"dataset\":\"synthetic\",\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"prune\"," \
                 "\"name\":\"p\",\"method\":[\"magnitude\",\"synflow\"],\"sparsity\":[0.5,0.9],\"scope\":[\"global\",\"layer\"]," \
                 "\"finetune\":{\"lr\":[0.01,0.001]},\"seed\":[0,1]}]}"

/* accuracy = 0.5 + 0.2 synflow + 0.1 layer + 0.05 (lr 0.001) - 0.1 sparsity + 0.01 seed */
static void grid_metrics(const rf_job *j, int i, const cJSON *s, cJSON *m) {
    double acc = 0.5, sp = nget(s, "sparsity");
    if (j->tasks[i].kind == RF_JOB_PRUNE) {
        acc += strcmp(sget(s, "method"), "synflow") == 0 ? 0.2 : 0;
        acc += strcmp(sget(s, "scope"), "layer") == 0 ? 0.1 : 0;
        acc += nget(s, "lr") == 0.001 ? 0.05 : 0;
        acc -= 0.1 * sp;
        cJSON_AddNumberToObject(m, "sparsity", sp);
        cJSON_AddNumberToObject(m, "nonzero_parameters", 1000 * (1 - sp));
    } else {
        cJSON_AddNumberToObject(m, "sparsity", 0);
        cJSON_AddNumberToObject(m, "nonzero_parameters", 1000);
        acc = 0.9;
    }
    acc += 0.01 * nget(s, "seed");
    cJSON_AddNumberToObject(m, "accuracy", acc);
    cJSON_AddNumberToObject(m, "parameters", 1000);
    cJSON_AddNumberToObject(m, "bytes", 4000 * (1 - (isfinite(sp) ? sp : 0)) + 100);
    cJSON *t = cJSON_AddObjectToObject(m, "timing");
    cJSON_AddNumberToObject(t, "latency_ms", 0.01 + 0.01 * (1 - (isfinite(sp) ? sp : 0)));
}

/* settings without "seed", printed: what two rows of one group must share */
static char *without_seed(const cJSON *row) {
    cJSON *s = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(row, "settings"), 1);
    cJSON_DeleteItemFromObjectCaseSensitive(s, "seed");
    char *t = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    return t;
}

Test(report, grid_over_non_seed_keys_is_never_averaged) {
    rf_job *j = parse(GRID_JOB);
    cr_assert_eq(j->n_tasks, 32 + 2);
    rf_store *s = make_store("grid", GRID_JOB, j, grid_metrics);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cJSON *rep;
    cr_assert_eq(rf_report_build(&ctx, s, NULL, &rep), RF_OK, "%s", ctx.err);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(rep, "tasks");
    cr_assert_eq(cJSON_GetArraySize(tasks), 34);
    /* a group is the rows that differ in their seed only, and both seeds are in it */
    int prune_series = 0;
    char seen[64][160];
    for (const cJSON *a = tasks->child; a; a = a->next) {
        cr_assert_str_eq(sget(a, "status"), "done");
        int same_group = 0;
        char *sa = without_seed(a);
        for (const cJSON *b = tasks->child; b; b = b->next) {
            char *sb = without_seed(b);
            int same_settings = strcmp(sa, sb) == 0;
            int same = strcmp(sget(a, "group"), sget(b, "group")) == 0;
            cr_assert_eq(same, same_settings, "%s / %s: group %s / %s", sget(a, "label"), sget(b, "label"), sget(a, "group"),
                         sget(b, "group"));
            same_group += same;
            free(sb);
        }
        free(sa);
        cr_assert_eq(same_group, 2, "%s", sget(a, "label"));
        if (strcmp(sget(a, "kind"), "prune")) continue;
        int k = 0;
        while (k < prune_series && strcmp(seen[k], sget(a, "series"))) k++;
        if (k == prune_series) snprintf(seen[prune_series++], sizeof seen[0], "%s", sget(a, "series"));
    }
    /* method x scope x lr: eight lines along the sparsity axis */
    cr_assert_eq(prune_series, 8);
    /* the varied settings are columns of their own */
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(rep, "setting_columns");
    cr_assert_eq(cJSON_GetArraySize(cols), 2);
    cr_assert_str_eq(cJSON_GetArrayItem(cols, 0)->valuestring, "scope");
    cr_assert_str_eq(cJSON_GetArrayItem(cols, 1)->valuestring, "lr");
    char *html;
    cr_assert_eq(rf_report_html(&ctx, rep, &html), RF_OK);
    /* the legend lists every line with its n, the experiment said once */
    cr_assert(strstr(html, "synflow/scope=layer/lr=0.001 (n = 2)"), "legend entry missing");
    cr_assert(strstr(html, "magnitude/scope=global/lr=0.01 (n = 2)"));
    cr_assert(strstr(html, "Experiment <b>p</b>"));
    /* synflow, layer, lr 0.001 at sparsity 0.9: 0.5+0.2+0.1+0.05-0.09 + (0, 0.01): 76.50% ± 0.71% */
    cr_assert(strstr(html, "p/synflow/sparsity=0.9/scope=layer/lr=0.001\ncompression ratio: all parameters / nonzero parameters "
                           "(log scale): 10×\ntest accuracy: 76.50% ± 0.71% (mean ± std over 2 seeds)"),
              "the marker's mean and std");
    /* the dense parents are one reference line, each parent once */
    cr_assert(strstr(html, "dense (n = 2)"));
    /* table: the varied settings' columns and the split named in the header */
    cr_assert(strstr(html, ">scope</th>") && strstr(html, ">lr</th>") && strstr(html, ">test acc</th>"));
    rf_free(html);
    cJSON_Delete(rep);
    /* the CSV: scope and lr columns after the fixed ones, one value per row */
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_report_write(&ctx, s, NULL), RF_OK, "%s", ctx.err);
    unsigned char *csv;
    size_t n;
    cr_assert_eq(rf_store_read(&ctx, s, "report.csv", &csv, &n), RF_OK);
    char *nl = strchr((char *)csv, '\n');
    cr_assert(nl && nl - (char *)csv > 10 && strncmp(nl - 9, ",scope,lr", 9) == 0, "CSV header: %.*s", (int)(nl - (char *)csv), csv);
    cr_assert(strstr((char *)csv, ",layer,0.001\n"));
    cr_assert_eq(count((char *)csv, "\n"), 35);
    rf_free(csv);
    rf_store_close(s);
    rf_job_free(j);
}

/* ---- the fields the pipelines phase adds ------------------------------------------- */

/* What a "from" chain will expand to: a dense model, two prunes of it, and
 * an int8 quantization of each pruned model (job_test_util.h). */
static const hand chain[] = {
    {0, RF_JOB_TRAIN, "{\"kind\":\"train\",\"model\":\"lenet-5\",\"seed\":0}", -1},
    {0, RF_JOB_PRUNE, "{\"kind\":\"prune\",\"method\":\"synflow\",\"model\":\"lenet-5\",\"seed\":0,\"sparsity\":0.5}", 0},
    {0, RF_JOB_PRUNE, "{\"kind\":\"prune\",\"method\":\"synflow\",\"model\":\"lenet-5\",\"seed\":0,\"sparsity\":0.9}", 0},
    {1, RF_JOB_QUANTIZE, "{\"kind\":\"quantize\",\"mode\":\"ptq\",\"model\":\"lenet-5\",\"seed\":0}", 1},
    {1, RF_JOB_QUANTIZE, "{\"kind\":\"quantize\",\"mode\":\"ptq\",\"model\":\"lenet-5\",\"seed\":0}", 2},
};

/* New metric names: test_accuracy / val_accuracy (no "accuracy"), and
 * every field the report shows when present. SynFlow at seed 0 is the
 * reference the chain test's numbers are worked out for; the other methods
 * and seeds lose a little (magnitude) or a lot at high sparsity (SNIP, whose
 * last layer collapses at 95%). */
static void chain_metrics(const rf_job *j, int i, const cJSON *s, cJSON *m) {
    double sp = nget(s, "sparsity"), seed = nget(s, "seed");
    if (!isfinite(sp)) {
        /* a quantized model: its parent's sparsity */
        const cJSON *ps = cJSON_Parse(rf_job_settings(j, rf_job_parents(j, i)[0]));
        sp = nget(ps, "sparsity");
        cJSON_Delete((cJSON *)ps);
        if (!isfinite(sp)) sp = 0;
    }
    int kind = j->tasks[i].kind;
    const char *method = sget(s, "method");
    if (kind == RF_JOB_QUANTIZE) {
        const cJSON *ps = cJSON_Parse(rf_job_settings(j, rf_job_parents(j, i)[0]));
        static char pm[32];
        snprintf(pm, sizeof pm, "%s", sget(ps, "method"));
        method = pm;
        cJSON_Delete((cJSON *)ps);
    }
    double loss = !strcmp(method, "magnitude") ? 0.05 * sp * sp : !strcmp(method, "snip") ? 0.6 * pow(sp, 6) : 0;
    double acc = 0.9 - 0.1 * sp - loss - 0.004 * seed - (kind == RF_JOB_QUANTIZE ? 0.01 : 0);
    cJSON_AddNumberToObject(m, "test_accuracy", acc);
    cJSON_AddNumberToObject(m, "val_accuracy", acc + 0.01);
    cJSON_AddNumberToObject(m, "parameters", 1000);
    cJSON_AddNumberToObject(m, "nonzero_parameters", 1000 * (1 - sp));
    cJSON_AddNumberToObject(m, "sparsity", sp);
    cJSON_AddNumberToObject(m, "bytes", kind == RF_JOB_QUANTIZE ? 1000 * (1 - sp) + 50 : 4000 * (1 - sp) + 100);
    cJSON_AddNumberToObject(m, "flops", 2e6 * (1 - sp));
    cJSON_AddNumberToObject(m, "dense_flops", 2e6);
    if (kind == RF_JOB_PRUNE) {
        cJSON_AddNumberToObject(m, "target_sparsity", sp);
        cJSON_AddNumberToObject(m, "accuracy_before_finetune", fmax(0.1, 0.9 - 0.5 * sp - loss));
        /* SynFlow keeps the layers balanced; magnitude and SNIP empty the small last layer first */
        int syn = !strcmp(method, "synflow"), mag = !strcmp(method, "magnitude");
        cJSON *ls = cJSON_AddObjectToObject(m, "layer_sparsity");
        cJSON_AddNumberToObject(ls, "conv1.weight", syn ? sp / 2 : mag ? sp / 3 : sp * 0.7);
        cJSON_AddNumberToObject(ls, "conv2.weight", syn ? sp : sp * 0.95);
        cJSON_AddNumberToObject(ls, "fc1.weight", fmin(1, sp * (syn ? 1.02 : 1.04)));
        cJSON_AddNumberToObject(ls, "fc3.weight", sp > 0.8 && !syn ? 1.0 : sp * 0.8);
    }
    cJSON *t = cJSON_AddObjectToObject(m, "timing");
    cJSON_AddNumberToObject(t, "latency_ms", (kind == RF_JOB_QUANTIZE ? 0.02 : 0.05) * (1 - 0.8 * sp));
    cJSON *c = cJSON_AddArrayToObject(m, "curve");
    for (int k = 1; k <= 3; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "step", 100 * k);
        cJSON_AddNumberToObject(e, "loss", 1.0 / k + sp);
        cJSON_AddNumberToObject(e, "val_accuracy", 0.5 + 0.1 * k - 0.1 * sp);
        cJSON_AddItemToArray(c, e);
    }
}

Test(report, pipeline_fields_shown_when_present) {
    static const char *const exps[] = {"prune", "int8"};
    rf_job *j = hand_job(exps, 2, chain, 5);
    rf_store *s = make_store("chain", NULL, j, chain_metrics);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cJSON *rep;
    cr_assert_eq(rf_report_build(&ctx, s, j, &rep), RF_OK, "%s", ctx.err);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(rep, "tasks");
    const cJSON *p9 = cJSON_GetArrayItem(tasks, 2), *q9 = cJSON_GetArrayItem(tasks, 4);
    /* the split is in the name: accuracy is the test split's */
    cr_assert_float_eq(nget(p9, "accuracy"), 0.81, 1e-12);
    cr_assert_float_eq(nget(p9, "test_accuracy"), 0.81, 1e-12);
    cr_assert_float_eq(nget(p9, "val_accuracy"), 0.82, 1e-12);
    cr_assert_float_eq(nget(p9, "target_sparsity"), 0.9, 1e-12);
    cr_assert_float_eq(nget(p9, "accuracy_before_finetune"), 0.45, 1e-12);
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(p9, "layer_remaining");
    cr_assert_float_eq(nget(lr, "conv1.weight"), 0.55, 1e-12);
    cr_assert_float_eq(nget(lr, "fc3.weight"), 0.28, 1e-12);
    /* equal quantize settings: the parent tells them apart */
    cr_assert_str_eq(sget(q9, "label"), "int8/int8-ptq from prune/synflow/sparsity=0.9");
    char *html;
    cr_assert_eq(rf_report_html(&ctx, rep, &html), RF_OK);
    cr_assert(strstr(html, "Pruning: test accuracy vs theoretical speedup"));
    cr_assert(strstr(html, "synflow (before fine-tuning)"));
    cr_assert(strstr(html, "Per-layer weights remaining at 90% sparsity"));
    cr_assert(strstr(html, "Training curves, prune at 90% sparsity: validation accuracy"));
    cr_assert(strstr(html, "Training curves, prune at 90% sparsity: training loss"));
    cr_assert(strstr(html, "Training curves, int8: validation accuracy"));
    cr_assert(strstr(html, "Quantization: int8 models and their float parents"));
    cr_assert_eq(count(html, "stroke='#999' stroke-width='1'"), 2, "one link per quantized model");
    cr_assert(strstr(html, ">val acc</th>") && strstr(html, ">target sparsity</th>") && strstr(html, ">FLOPs</th>"));
    rf_free(html);
    cJSON_Delete(rep);
    rf_store_close(s);
    rf_job_free(j);
}

/* A realistic study of the pipelines phase, by hand: dense models of two
 * seeds, magnitude / SNIP / SynFlow at 50-95% of each, and an int8 model of
 * every pruned one. RAFFLE_REPORT_FIXTURE=DIR also writes its report to DIR
 * (what scripts/screenshot-report.sh renders to look at). */
Test(report, study_of_chains) {
    static const char *const methods[] = {"magnitude", "snip", "synflow"};
    static const double sps[] = {0.5, 0.8, 0.9, 0.95};
    enum { N = 2 + 2 * 3 * 4 * 2 };
    static char text[N][200];
    hand h[N];
    int n = 0;
    for (int seed = 0; seed < 2; seed++) {
        int dense = n;
        snprintf(text[n], sizeof text[n], "{\"kind\":\"train\",\"model\":\"lenet-5\",\"seed\":%d}", seed);
        h[n] = (hand){0, RF_JOB_TRAIN, text[n], -1};
        n++;
        for (int m = 0; m < 3; m++)
            for (int k = 0; k < 4; k++) {
                snprintf(text[n], sizeof text[n], "{\"kind\":\"prune\",\"method\":\"%s\",\"model\":\"lenet-5\",\"seed\":%d,"
                         "\"sparsity\":%g}", methods[m], seed, sps[k]);
                h[n] = (hand){0, RF_JOB_PRUNE, text[n], dense};
                n++;
                snprintf(text[n], sizeof text[n], "{\"kind\":\"quantize\",\"mode\":\"ptq\",\"model\":\"lenet-5\",\"seed\":%d}", seed);
                h[n] = (hand){1, RF_JOB_QUANTIZE, text[n], n - 1};
                n++;
            }
    }
    cr_assert_eq(n, N);
    static const char *const exps[] = {"prune", "int8"};
    rf_job *j = hand_job(exps, 2, h, n);
    rf_store *s = make_store("study", NULL, j, chain_metrics);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cJSON *rep;
    cr_assert_eq(rf_report_build(&ctx, s, j, &rep), RF_OK, "%s", ctx.err);
    /* every label is unique; a quantized model's group is its parent's
     * setting without the seed: two seeds per group */
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(rep, "tasks");
    for (const cJSON *a = tasks->child; a; a = a->next) {
        int same_label = 0, same_group = 0;
        for (const cJSON *b = tasks->child; b; b = b->next) {
            same_label += strcmp(sget(a, "label"), sget(b, "label")) == 0;
            same_group += strcmp(sget(a, "group"), sget(b, "group")) == 0;
        }
        cr_assert_eq(same_label, 1, "%s", sget(a, "label"));
        cr_assert_eq(same_group, 2, "%s", sget(a, "group"));
    }
    const cJSON *q = cJSON_GetArrayItem(tasks, 1 + 2 * 11 + 1);   /* seed 0: dense, then (prune, int8) pairs; synflow 0.95 is the last */
    cr_assert_str_eq(sget(q, "label"), "int8/int8-ptq/seed=0 from prune/synflow/sparsity=0.95/seed=0");
    cr_assert_str_eq(sget(q, "group"), "int8/int8-ptq from prune/synflow/sparsity=0.95");
    char *html;
    cr_assert_eq(rf_report_html(&ctx, rep, &html), RF_OK);
    cr_assert_eq(count(html, "stroke='#999' stroke-width='1'"), 24, "every int8 model joined to its parent");
    cr_assert(strstr(html, "synflow (n = 2)") && strstr(html, "snip (before fine-tuning) (n = 2)"));
    /* SNIP and magnitude empty the last layer at 90% and 95%: crosses on the bottom edge */
    cr_assert(strstr(html, "nothing left (collapsed)"), "the collapsed layer's cross is in the legend");
    rf_free(html);
    const char *keep = getenv("RAFFLE_REPORT_FIXTURE");
    if (keep) cr_assert_eq(rf_report_write_dir(&ctx, keep, rep), RF_OK, "%s", ctx.err);
    cJSON_Delete(rep);
    rf_store_close(s);
    rf_job_free(j);
}

/* ---- comparisons ----------------------------------------------------------------- */

#define SMALL_JOB "{\"dataset\":\"synthetic\",\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"prune\",\"name\":\"p\"," \
                  "\"method\":\"magnitude\",\"sparsity\":[0.5,0.9],\"seed\":[0,1]}]}"

Test(report, compare_keeps_sweeps_apart) {
    rf_job *j = parse(SMALL_JOB);
    rf_store *a = make_store("a", SMALL_JOB, j, grid_metrics), *b = make_store("b", SMALL_JOB, j, grid_metrics);
    rf_report_source src[2] = {{.store = a, .sweep = "monday", .link = "../a/"}, {.store = b, .sweep = "tuesday", .link = "../b/"}};
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cJSON *rep;
    cr_assert_eq(rf_report_build_sources(&ctx, src, 2, &rep), RF_OK, "%s", ctx.err);
    cr_assert_str_eq(sget(rep, "name"), "monday vs tuesday");
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(rep, "tasks");
    cr_assert_eq(cJSON_GetArraySize(tasks), 2 * j->n_tasks);
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const char *sw = sget(t, "sweep");
        cr_assert(!strcmp(sw, "monday") || !strcmp(sw, "tuesday"));
        char want[64];
        snprintf(want, sizeof want, "%s: p/", sw);
        cr_assert(strncmp(sget(t, "group"), want, strlen(want)) == 0, "%s", sget(t, "group"));
        cr_assert(strncmp(sget(t, "series"), want, strlen(want)) == 0);
        cr_assert_str_eq(sget(t, "link"), !strcmp(sw, "monday") ? "../a/" : "../b/");
    }
    char *html;
    cr_assert_eq(rf_report_html(&ctx, rep, &html), RF_OK);
    cr_assert(strstr(html, "raffle comparison: monday vs tuesday"));
    cr_assert(strstr(html, "monday: p/magnitude (n = 2)") && strstr(html, "tuesday: p/magnitude (n = 2)"), "one line per sweep");
    cr_assert(strstr(html, "href='../b/tasks/"), "links reach the other store");
    cr_assert(strstr(html, ">sweep</th>"));
    rf_free(html);
    /* a directory of its own, written atomically */
    char dir[400];
    snprintf(dir, sizeof dir, "%s/cmp/out", root);
    cr_assert_eq(rf_report_write_dir(&ctx, dir, rep), RF_OK, "%s", ctx.err);
    char path[500];
    snprintf(path, sizeof path, "%s/report.csv", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[4096];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert(strncmp(line, "id,sweep,", 9) == 0);
    fclose(f);
    cJSON_Delete(rep);
    rf_store_close(a);
    rf_store_close(b);
    rf_job_free(j);
}

Test(report, html_of_a_report_without_tasks_is_an_error) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cJSON *rep = cJSON_Parse("{\"name\":\"x\"}");
    char *html = NULL;
    cr_assert_eq(rf_report_html(&ctx, rep, &html), RF_ERR_FORMAT);
    cr_assert_null(html);
    cJSON_Delete(rep);
}

/* ---- the plot engine ------------------------------------------------------------ */

static char *render(plot *p) {
    rf_buf b = {0};
    plot_render(&b, p, NULL);
    plot_free(p);
    cr_assert_not(b.oom);
    return b.p;
}

Test(report, ticks_are_1_2_5_in_the_axis_unit) {
    plot *p = plot_new("t", NULL, (axis){.label = "size", .log = 1, .unit = AX_BYTES}, (axis){.label = "acc", .unit = AX_PERCENT}, 0);
    int s = plot_series(p, "a", 0);
    plot_add(p, s, "1", 1100, 0.813, NULL, NULL);
    plot_add(p, s, "2", 4900, 0.8825, NULL, NULL);
    char *h = render(p);
    cr_assert(strstr(h, ">1 kB</text>") && strstr(h, ">2 kB</text>") && strstr(h, ">5 kB</text>"), "%s", h);
    cr_assert(strstr(h, ">81%</text>") && strstr(h, ">82%</text>") && strstr(h, ">89%</text>"), "%s", h);
    cr_assert_null(strstr(h, ">0.813"));
    rf_free(h);
    /* weights remaining, decreasing to the right: 100% first */
    p = plot_new("t", NULL, (axis){.label = "remaining", .log = 1, .rev = 1, .unit = AX_PERCENT}, (axis){.label = "y", .unit = AX_PLAIN}, 0);
    s = plot_series(p, "a", 0);
    plot_add(p, s, "1", 1, 1, NULL, NULL);
    plot_add(p, s, "2", 0.125, 2, NULL, NULL);
    h = render(p);
    const char *t100 = strstr(h, ">100%</text>"), *t50 = strstr(h, ">50%</text>"), *t10 = strstr(h, ">10%</text>");
    cr_assert(t100 && t50 && strstr(h, ">20%</text>") && t10, "%s", h);
    /* the 100% tick is left of the 10% one */
    const char *a = t100, *c = t10;
    while (a > h && strncmp(a, "x='", 3)) a--;
    while (c > h && strncmp(c, "x='", 3)) c--;
    cr_assert_lt(atof(a + 3), atof(c + 3));
    rf_free(h);
    /* compression ratios: 1x 2x 5x 10x 20x */
    p = plot_new("t", NULL, (axis){.label = "c", .log = 1, .unit = AX_RATIO}, (axis){.label = "y", .unit = AX_PLAIN}, 0);
    s = plot_series(p, "a", 0);
    plot_add(p, s, "1", 1, 1, NULL, NULL);
    plot_add(p, s, "2", 20, 2, NULL, NULL);
    h = render(p);
    cr_assert(strstr(h, ">1×</text>") && strstr(h, ">2×</text>") && strstr(h, ">5×</text>") && strstr(h, ">20×</text>"), "%s", h);
    rf_free(h);
}

Test(report, legend_never_hides_a_series) {
    plot *p = plot_new("many", NULL, (axis){.label = "x", .unit = AX_PLAIN}, (axis){.label = "y", .unit = AX_PLAIN}, PL_LINES | PL_AGG);
    char name[64];
    for (int k = 0; k < 15; k++) {
        snprintf(name, sizeof name, "method-number-%02d/scope=layer", k);
        int s = plot_series(p, name, 0);
        plot_add(p, s, "g", 1, k, NULL, NULL);
        plot_add(p, s, "g", 1, k + 2, NULL, NULL);   /* a second seed: mean k + 1, std sqrt(2) */
    }
    char *h = render(p);
    for (int k = 0; k < 15; k++) {
        snprintf(name, sizeof name, ">method-number-%02d/scope=layer (n = 2)</text>", k);
        cr_assert(strstr(h, name), "legend lacks %s", name);
    }
    /* past ten colours the markers change shape */
    cr_assert(strstr(h, "<rect x="), "a square marker");
    cr_assert(strstr(h, "y: 1.414 (mean ± std over 2 seeds)") || strstr(h, "± 1.414 (mean ± std over 2 seeds)"), "%s", h);
    rf_free(h);
}

Test(report, pareto_frontier_members) {
    plot *p = plot_new("p", NULL, (axis){.label = "x", .log = 1, .unit = AX_BYTES}, (axis){.label = "y", .unit = AX_PERCENT}, PL_PARETO);
    cJSON *rows = cJSON_CreateArray();
    /* (size, accuracy): a and c are on the frontier, b is beaten by a, d by c */
    const struct { const char *id; double x, y; } v[] = {{"a", 100, 0.8}, {"b", 200, 0.7}, {"c", 300, 0.9}, {"d", 400, 0.9}};
    for (int k = 0; k < 4; k++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "id", v[k].id);
        cJSON_AddItemToArray(rows, r);
        plot_add(p, plot_series(p, "m", ST_NOLINE), v[k].id, v[k].x, v[k].y, r, v[k].id);
    }
    const cJSON *m[8];
    int n = plot_frontier(p, m, 8);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(sget(m[0], "id"), "a");
    cr_assert_str_eq(sget(m[1], "id"), "c");
    plot_free(p);
    cJSON_Delete(rows);
}
