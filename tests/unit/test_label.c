/* Readable task labels (src/job/label.c): varied keys of a grid, the keys a
 * method label already says left out, seed last, " from " for stages that
 * only their parent tells apart, "#id" as the last resort; and raffle
 * find's matching. The expected labels are written out by hand. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include "raffle/job.h"
#include "job_test_util.h"

static rf_job *parse(const char *txt) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    cr_assert_eq(rf_job_parse(&ctx, txt, strlen(txt), "t", &j), RF_OK, "%s", ctx.err);
    return j;
}

static rf_job_labels *labels(const rf_job *j) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job_labels *l = NULL;
    cr_assert_eq(rf_job_labels_new(&ctx, j, &l), RF_OK, "%s", ctx.err);
    return l;
}

/* Index of the task whose label is `want`, failing with every label when none is. */
static int find_label(const rf_job *j, const rf_job_labels *l, const char *want) {
    for (int i = 0; i < j->n_tasks; i++)
        if (strcmp(rf_job_label(l, i), want) == 0) return i;
    char all[8192] = "";
    for (int i = 0; i < j->n_tasks; i++) {
        strncat(all, rf_job_label(l, i), sizeof all - strlen(all) - 2);
        strncat(all, "\n", sizeof all - strlen(all) - 1);
    }
    cr_assert_fail("no task labelled \"%s\"; labels:\n%s", want, all);
    return -1;
}

static int labels_unique(const rf_job *j, const rf_job_labels *l) {
    for (int a = 0; a < j->n_tasks; a++)
        for (int b = a + 1; b < j->n_tasks; b++)
            if (strcmp(rf_job_label(l, a), rf_job_label(l, b)) == 0) return 0;
    return 1;
}

#define HEAD "{\"dataset\":\"synthetic\",\"model\":\"lenet-300-100\","

Test(label, grid_keys_in_order_seed_last) {
    /* scope x finetune.lr x method x seed: the fine-tuning lr is the prune
     * task's "lr"; sparsity has one value, so it is no part of the label */
    rf_job *j = parse(HEAD "\"experiments\":[{\"kind\":\"prune\",\"name\":\"p\",\"method\":[\"magnitude\",\"synflow\"],"
                      "\"sparsity\":0.9,\"scope\":[\"global\",\"layer\"],\"finetune\":{\"lr\":[0.01,0.001]},\"seed\":[0,1]}]}");
    rf_job_labels *l = labels(j);
    cr_assert_eq(j->n_tasks, 2 + 16);
    cr_assert(labels_unique(j, l));
    int i = find_label(j, l, "p/synflow/scope=layer/lr=0.001/seed=1");
    find_label(j, l, "p/magnitude/scope=global/lr=0.01/seed=0");
    find_label(j, l, "p/dense/seed=0");
    find_label(j, l, "p/dense/seed=1");
    /* the seed-free form names the group a seed average is over */
    char buf[256];
    static const char *const no_seed[] = {"seed", NULL};
    rf_job_label_format(l, i, no_seed, 0, buf, sizeof buf);
    cr_assert_str_eq(buf, "p/synflow/scope=layer/lr=0.001");
    static const char *const no_seed_lr[] = {"seed", "lr", NULL};
    rf_job_label_format(l, i, no_seed_lr, RF_LABEL_NO_EXPERIMENT, buf, sizeof buf);
    cr_assert_str_eq(buf, "synflow/scope=layer");
    /* the group's keys: method varies but the label says it; seed last */
    int n = rf_job_label_nkeys(l, i), saw_method = 0;
    unsigned f;
    for (int k = 0; k < n; k++) {
        const char *key = rf_job_label_key(l, i, k, &f);
        if (strcmp(key, "method") == 0) { saw_method = 1; cr_assert_eq(f, RF_LABEL_KEY_VARIED); }
        if (strcmp(key, "sparsity") == 0) cr_assert_eq(f, 0);
        if (strcmp(key, "scope") == 0 || strcmp(key, "lr") == 0) cr_assert_eq(f, RF_LABEL_KEY_VARIED | RF_LABEL_KEY_SHOWN);
    }
    cr_assert(saw_method);
    cr_assert_str_eq(rf_job_label_key(l, i, n - 1, &f), "seed");
    cr_assert_null(rf_job_label_key(l, i, n, &f));
    rf_job_labels_free(l);
    rf_job_free(j);
}

Test(label, method_determined_keys_left_out) {
    /* quantize's mode follows from its label int8-ptq / int8-qat; lottery's
     * control from imp / imp-reinit; round varies within each */
    rf_job *j = parse(HEAD "\"experiments\":[{\"kind\":\"quantize\",\"name\":\"q\",\"mode\":[\"ptq\",\"qat\"]},"
                      "{\"kind\":\"lottery\",\"name\":\"lth\",\"rounds\":2,\"controls\":[\"reinit\"]}]}");
    rf_job_labels *l = labels(j);
    find_label(j, l, "q/int8-ptq");
    find_label(j, l, "q/int8-qat");
    find_label(j, l, "q/dense");
    find_label(j, l, "lth/imp/round=0");
    find_label(j, l, "lth/imp/round=2");
    find_label(j, l, "lth/imp-reinit/round=2");
    cr_assert(labels_unique(j, l));
    rf_job_labels_free(l);
    rf_job_free(j);
}


Test(label, equal_stages_named_by_parent_then_id) {
    const hand h[] = {
        {0, RF_JOB_PRUNE, "{\"kind\":\"prune\",\"method\":\"synflow\",\"seed\":0,\"sparsity\":0.5}", -1},
        {0, RF_JOB_PRUNE, "{\"kind\":\"prune\",\"method\":\"synflow\",\"seed\":0,\"sparsity\":0.9}", -1},
        {1, RF_JOB_QUANTIZE, "{\"kind\":\"quantize\",\"mode\":\"ptq\",\"seed\":0}", 0},
        {1, RF_JOB_QUANTIZE, "{\"kind\":\"quantize\",\"mode\":\"ptq\",\"seed\":0}", 1},
        /* same settings and a parent with the same label as task 3's: only the id is left */
        {1, RF_JOB_QUANTIZE, "{\"kind\":\"quantize\",\"mode\":\"ptq\",\"seed\":0}", 1},
    };
    static const char *const exps[] = {"prune", "quant"};
    rf_job *j = hand_job(exps, 2, h, 5);
    rf_job_labels *l = labels(j);
    cr_assert_str_eq(rf_job_label(l, 0), "prune/synflow/sparsity=0.5");
    cr_assert_str_eq(rf_job_label(l, 2), "quant/int8-ptq from prune/synflow/sparsity=0.5");
    cr_assert_str_eq(rf_job_label(l, 3), "quant/int8-ptq from prune/synflow/sparsity=0.9 #10000003");
    cr_assert_str_eq(rf_job_label(l, 4), "quant/int8-ptq from prune/synflow/sparsity=0.9 #10000004");
    char buf[128];
    static const char *const no_sparsity[] = {"sparsity", NULL};
    rf_job_label_format(l, 2, no_sparsity, 0, buf, sizeof buf);
    cr_assert_str_eq(buf, "quant/int8-ptq from prune/synflow");
    /* a short buffer is cut and NUL-terminated; the length says what it needed */
    size_t need = rf_job_label_format(l, 2, NULL, 0, buf, 8);
    cr_assert_eq(need, strlen(rf_job_label(l, 2)));
    cr_assert_str_eq(buf, "quant/i");
    rf_job_labels_free(l);
    rf_job_free(j);
}

Test(label, find_matching) {
    rf_job *j = parse(HEAD "\"experiments\":[{\"kind\":\"prune\",\"name\":\"p\",\"method\":[\"magnitude\",\"synflow\"],"
                      "\"sparsity\":[0.5,0.9],\"seed\":[0,1]},{\"kind\":\"quantize\",\"name\":\"q\",\"engine\":{\"conv\":\"gemm\"}}]}");
    rf_job_labels *l = labels(j);
    int hits = 0, hits_q = 0, hits_conv = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        cJSON *s = cJSON_Parse(rf_job_settings(j, i));
        /* numbers as numbers: 0.90 is 0.9 */
        int m = rf_job_task_match(l, i, s, "method", "synflow") && rf_job_task_match(l, i, s, "sparsity", "0.90");
        if (m) {
            hits++;
            cr_assert(strstr(rf_job_label(l, i), "p/synflow/sparsity=0.9/") == rf_job_label(l, i), "%s", rf_job_label(l, i));
        }
        hits_q += rf_job_task_match(l, i, s, "method", "int8-ptq");   /* no "method" setting: the label's */
        hits_conv += rf_job_task_match(l, i, s, "engine.conv", "gemm");
        cr_assert_not(rf_job_task_match(l, i, s, "sparsity", "0.9x"));
        cr_assert_not(rf_job_task_match(l, i, s, "id", ""));
        cJSON_Delete(s);
    }
    cr_assert_eq(hits, 2);          /* seeds 0 and 1 */
    cr_assert_eq(hits_q, 1);
    cr_assert_eq(hits_conv, 2);     /* the quantize task and its dense parent */
    cr_assert(rf_job_has_key(l, "sparsity"));
    cr_assert(rf_job_has_key(l, "engine.conv"));
    cr_assert(rf_job_has_key(l, "experiment"));
    cr_assert_not(rf_job_has_key(l, "sparsty"));
    cr_assert_str_eq(rf_job_key_suggest(l, "sparsty"), "sparsity");
    cr_assert_null(rf_job_key_suggest(l, "zzzzzzzzzz"));
    rf_job_labels_free(l);
    rf_job_free(j);
}

Test(label, allocation_failures_are_errors_without_leaks) {
    rf_job *j = parse(HEAD "\"experiments\":[{\"kind\":\"prune\",\"method\":[\"magnitude\",\"snip\"],\"sparsity\":[0.5,0.9]}]}");
    int ok = 0, failed = 0;
    for (long n = 0; n < 2000 && !ok; n++) {
        long live = rf_alloc_live();
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        rf_job_labels *l = NULL;
        rf_alloc_fail_after(n);
        rf_status s = rf_job_labels_new(&ctx, j, &l);
        rf_alloc_fail_after(-1);
        if (s == RF_OK) { ok = 1; rf_job_labels_free(l); }
        else { cr_assert_null(l); cr_assert_eq(s, RF_ERR_NOMEM, "n=%ld: %s", n, ctx.err); failed++; }
        cr_assert_eq(rf_alloc_live(), live, "leak at n=%ld", n);
    }
    cr_assert(ok);
    cr_assert_gt(failed, 5);
    rf_job_free(j);
}
