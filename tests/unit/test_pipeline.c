/* Pipelines in job files (issue 23): "from" with the selectors all, where and
 * best, the deferred expansion of best stages and the facts that resolve
 * them, ids through the chain, and the refusal of impossible chains with the
 * JSON path. The selection is checked against winners worked out by hand
 * from the metrics the facts give. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "raffle/job.h"

#define HEAD "{\"name\":\"p\",\"dataset\":\"synthetic:600:3\",\"model\":\"lenet-300-100\",\"train\":{\"epochs\":1},"
#define PRUNE "{\"kind\":\"prune\",\"name\":\"prune\",\"method\":[\"magnitude\",\"snip\"],\"sparsity\":[0.5,0.9],\"seed\":[0,1]}"

static rf_job *parse_ok(const char *txt, const rf_job_facts *f) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    rf_status s = rf_job_parse_facts(&ctx, txt, strlen(txt), "t", NULL, f, &j);
    cr_assert_eq(s, RF_OK, "%s", rf_ctx_error(&ctx));
    return j;
}

static void reject(const char *txt, const char *want) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    rf_status s = rf_job_parse(&ctx, txt, strlen(txt), "t", &j);
    cr_assert_neq(s, RF_OK, "accepted: %s", txt);
    cr_assert_null(j);
    cr_assert(strstr(ctx.err, want) != NULL, "message \"%s\" lacks \"%s\"", ctx.err, want);
}

/* Tasks of experiment e (by the experiment that produced them) of kind k. */
static int count(const rf_job *j, int e, int k) {
    int n = 0;
    for (int i = 0; i < j->n_tasks; i++) n += (int)j->tasks[i].exp == e && j->tasks[i].kind == k;
    return n;
}

static cJSON *settings(const rf_job *j, int i) { return cJSON_Parse(rf_job_settings(j, i)); }
static double num(const cJSON *s, const char *k) { return cJSON_GetObjectItemCaseSensitive(s, k)->valuedouble; }
static const char *str(const cJSON *s, const char *k) { return cJSON_GetObjectItemCaseSensitive(s, k)->valuestring; }

Test(pipeline, from_all_branches_once_per_parent) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"prune\"}]}", NULL);
    cr_assert_eq(j->n_deferred, 0);
    cr_assert_eq(count(j, 0, RF_JOB_PRUNE), 8);
    cr_assert_eq(count(j, 1, RF_JOB_QUANTIZE), 8, "one quantize per prune task");
    cr_assert_eq(count(j, 1, RF_JOB_TRAIN), 0, "a stage trains no dense model of its own");
    uint64_t seen[8];
    int n = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_QUANTIZE) continue;
        cr_assert_eq(j->tasks[i].n_parents, 1);
        int p = rf_job_parents(j, i)[0];
        cr_assert_eq(j->tasks[p].kind, RF_JOB_PRUNE, "the parent is the pruned model, not the dense one");
        cJSON *s = settings(j, i), *ps = settings(j, p);
        cr_assert_eq(num(s, "seed"), num(ps, "seed"), "a branch keeps its parent's seed");
        cr_assert_str_eq(str(s, "data"), str(ps, "data"));
        cJSON_Delete(s);
        cJSON_Delete(ps);
        for (int k = 0; k < n; k++) cr_assert_neq(seen[k], j->tasks[i].id, "equal settings, other parent: other id");
        seen[n++] = j->tasks[i].id;
    }
    rf_job_free(j);
}

Test(pipeline, where_filters_and_chains) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[" PRUNE
                         ",{\"kind\":\"train\",\"name\":\"ft\",\"from\":\"prune\",\"where\":{\"method\":\"snip\",\"sparsity\":[0.9]}}"
                         ",{\"kind\":\"quantize\",\"name\":\"qat\",\"from\":\"ft\",\"mode\":\"qat\"}"
                         ",{\"kind\":\"distill\",\"name\":\"kd\",\"from\":\"prune\",\"where\":{\"sparsity\":0.5,\"seed\":0},"
                         "\"teacher\":{\"model\":\"lenet-300-100\"}}]}",
                         NULL);
    cr_assert_eq(count(j, 1, RF_JOB_TRAIN), 2, "snip at 0.9, two seeds");
    cr_assert_eq(count(j, 2, RF_JOB_QUANTIZE), 2);
    cr_assert_eq(count(j, 3, RF_JOB_DISTILL), 2, "magnitude and snip at 0.5, seed 0");
    for (int i = 0; i < j->n_tasks; i++) {
        cJSON *s = settings(j, i);
        if (j->tasks[i].exp == 1) {
            cr_assert_str_eq(str(s, "init"), "parent", "fine-tuning continues the pruned model");
            cJSON *ps = settings(j, rf_job_parents(j, i)[0]);
            cr_assert_str_eq(str(ps, "method"), "snip");
            cr_assert_eq(num(ps, "sparsity"), 0.9);
            cJSON_Delete(ps);
        }
        if (j->tasks[i].kind == RF_JOB_DISTILL) {
            /* the teacher first, then the student: the pruned model (its mask kept) */
            cr_assert_eq(j->tasks[i].n_parents, 2);
            cr_assert_str_eq(str(s, "init"), "parent");
            const int32_t *par = rf_job_parents(j, i);
            cr_assert_eq(j->tasks[par[0]].kind, RF_JOB_TRAIN);
            cr_assert_eq(j->tasks[par[1]].kind, RF_JOB_PRUNE);
            /* the teacher is the prune experiment's dense model of the same seed (same settings: one task) */
            cr_assert_eq(rf_job_parents(j, par[1])[0], par[0]);
        }
        cJSON_Delete(s);
    }
    rf_job_free(j);
}

/* facts: a JSON object the way rank 0 sends them */
static cJSON *facts_of_kind(const rf_job *j, int kind, const double *val, const char *const *state) {
    cJSON *f = cJSON_CreateObject();
    int k = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != kind) continue;
        char hx[17];
        rf_job_id_hex(j->tasks[i].id, hx);
        if (state[k]) {
            cJSON *o = cJSON_AddObjectToObject(f, hx);
            cJSON_AddStringToObject(o, "state", state[k]);
            if (!isnan(val[k])) cJSON_AddNumberToObject(o, "val_accuracy", val[k]);
        }
        k++;
    }
    return f;
}
static cJSON *facts_for(const rf_job *j, const double *val, const char *const *state) {
    return facts_of_kind(j, RF_JOB_PRUNE, val, state);
}

#define BEST_JOB HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"train\",\"name\":\"best\",\"from\":\"prune\"," \
    "\"best\":{\"by\":\"val_accuracy\",\"per\":[\"method\",\"sparsity\"]}},{\"kind\":\"quantize\",\"name\":\"after\",\"from\":\"best\"}]}"

Test(pipeline, best_is_deferred_until_every_candidate_ended) {
    rf_job *j = parse_ok(BEST_JOB, NULL);
    cr_assert_eq(j->n_deferred, 2, "the best stage and the stage from it wait");
    cr_assert(j->exp_deferred[1] && j->exp_deferred[2]);
    cr_assert_eq(count(j, 1, RF_JOB_TRAIN), 0);
    /* every candidate known but one: still waiting */
    double v[8] = {0.5, 0.6, 0.7, 0.8, 0.5, 0.6, 0.7, 0.8};
    const char *st[8] = {"done", "done", "done", "done", "done", "done", "done", NULL};
    cJSON *f = facts_for(j, v, st);
    rf_job_facts facts = {rf_job_fact_json, f};
    rf_job *j2 = parse_ok(BEST_JOB, &facts);
    cr_assert_eq(j2->n_deferred, 2);
    rf_job_free(j2);
    cJSON_Delete(f);
    rf_job_free(j);
}

Test(pipeline, best_picks_the_validation_winner_of_each_group) {
    rf_job *j = parse_ok(BEST_JOB, NULL);
    /* candidates in expansion order: method (magnitude, snip) x sparsity
     * (0.5, 0.9) x seed (0, 1); groups are (method, sparsity) pairs */
    int idx[8], k = 0;
    for (int i = 0; i < j->n_tasks; i++) if (j->tasks[i].kind == RF_JOB_PRUNE) idx[k++] = i;
    cr_assert_eq(k, 8);
    /* mag/0.5: seed 1 wins; mag/0.9: seed 0 failed, seed 1 alone; snip/0.5:
     * a tie, the first (seed 0) wins; snip/0.9: seed 0 has no validation
     * metric (NaN: never chosen), seed 1 wins */
    double v[8] = {0.70, 0.90, NAN, 0.40, 0.80, 0.80, NAN, 0.30};
    const char *st[8] = {"done", "done", "gone", "done", "done", "done", "done", "done"};
    int want[4] = {idx[1], idx[3], idx[4], idx[7]};
    cJSON *f = facts_for(j, v, st);
    rf_job_facts facts = {rf_job_fact_json, f};
    rf_job *r = parse_ok(BEST_JOB, &facts);
    cr_assert_eq(r->n_deferred, 0);
    int got = 0;
    for (int i = 0; i < r->n_tasks; i++) {
        if (r->tasks[i].exp != 1) continue;
        cr_assert_eq(r->tasks[i].kind, RF_JOB_TRAIN);
        uint64_t pid = r->tasks[rf_job_parents(r, i)[0]].id;
        cr_assert_lt(got, 4);
        cr_assert_eq(pid, j->tasks[want[got]].id, "group %d: wrong winner", got);
        got++;
    }
    cr_assert_eq(got, 4);
    cr_assert_eq(count(r, 2, RF_JOB_QUANTIZE), 4, "the stage after best now expands too");
    /* the same job expanded again from the same facts: the same ids */
    rf_job *r2 = parse_ok(BEST_JOB, &facts);
    cr_assert_eq(r2->n_tasks, r->n_tasks);
    for (int i = 0; i < r->n_tasks; i++) cr_assert_eq(r2->tasks[i].id, r->tasks[i].id);
    rf_job_free(r2);
    /* the recorder writes what it read in the form the JSON reader takes:
     * another rank expands the same DAG from it */
    cJSON *log = cJSON_CreateObject();
    rf_job_fact_log rec = {facts, log};
    rf_job_facts recf = {rf_job_fact_record, &rec};
    rf_job *r3 = parse_ok(BEST_JOB, &recf);
    rf_job_facts replay = {rf_job_fact_json, log};
    rf_job *r4 = parse_ok(BEST_JOB, &replay);
    cr_assert_eq(r4->n_tasks, r3->n_tasks);
    for (int i = 0; i < r3->n_tasks; i++) cr_assert_eq(r4->tasks[i].id, r3->tasks[i].id);
    rf_job_free(r3);
    rf_job_free(r4);
    cJSON_Delete(log);
    rf_job_free(r);
    cJSON_Delete(f);
    rf_job_free(j);
}

Test(pipeline, val_loss_selects_the_lowest) {
    const char *txt = HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"name\":\"b\",\"from\":\"prune\","
                      "\"best\":{\"by\":\"val_loss\"}}]}";
    rf_job *j = parse_ok(txt, NULL);
    cJSON *f = cJSON_CreateObject();
    int k = 0, want = -1;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_PRUNE) continue;
        char hx[17];
        rf_job_id_hex(j->tasks[i].id, hx);
        cJSON *o = cJSON_AddObjectToObject(f, hx);
        cJSON_AddStringToObject(o, "state", "done");
        double loss = k == 5 ? 0.1 : 1.0 + k;   /* task 5 has the lowest loss */
        if (k == 5) want = i;
        cJSON_AddNumberToObject(o, "val_loss", loss);
        k++;
    }
    rf_job_facts facts = {rf_job_fact_json, f};
    rf_job *r = parse_ok(txt, &facts);
    int n = 0;
    for (int i = 0; i < r->n_tasks; i++)
        if (r->tasks[i].exp == 1) { n++; cr_assert_eq(r->tasks[rf_job_parents(r, i)[0]].id, j->tasks[want].id); }
    cr_assert_eq(n, 1, "no per: one group");
    rf_job_free(r);
    cJSON_Delete(f);
    rf_job_free(j);
}

Test(pipeline, impossible_chains_are_refused_with_the_json_path) {
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":\"prun\"}]}",
           "experiments[1].from: no earlier experiment is named \"prun\" (did you mean \"prune\"?)");
    reject(HEAD "\"experiments\":[{\"kind\":\"quantize\",\"from\":\"prune\"}," PRUNE "]}",
           "experiments[0].from: \"prune\" is experiments[1], after this one (stages run in file order");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":\"xyzzy\"}]}",
           "experiments[1].from: no earlier experiment is named \"xyzzy\" (a stage comes after");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"best\":{}}]}", "experiments[1]: best: only with \"from\"");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":\"prune\",\"best\":{\"by\":\"accuracy\"}}]}",
           "experiments[1].best.by: \"accuracy\" is not one of val_accuracy, best_val_accuracy, val_loss");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":\"prune\",\"best\":{\"per\":[\"methd\"]}}]}",
           "experiments[1]: best.per: no model of \"from\" has the setting \"methd\"");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"prune\"},"
                "{\"kind\":\"quantize\",\"from\":\"q\",\"mode\":\"qat\"}]}",
           "experiments[2]: from: its models are int8 (quantize tasks): QAT on an already int8 model is refused");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"prune\"},"
                "{\"kind\":\"prune\",\"from\":\"q\",\"method\":\"magnitude\",\"sparsity\":0.5}]}",
           "experiments[2]: from: its models are int8 (quantize tasks): no stage takes an int8 model");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"q\"}]}",
           "experiments[1].from: \"q\" is this experiment");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":[\"prune\",\"later\"]},"
                "{\"kind\":\"train\",\"name\":\"later\"}]}",
           "experiments[1].from: \"later\" is experiments[2], after this one");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"lottery\",\"from\":\"prune\",\"rewind_iteration\":5}]}",
           "experiments[1]: rewind_iteration: with from, round 0 is the earlier experiment's model");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"ofa\",\"from\":\"prune\",\"sparsity\":0.5}]}",
           "experiments[1]: from: an ofa experiment starts from a dense trained model");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"prune\",\"from\":\"prune\",\"method\":\"snip\",\"sparsity\":0.5,\"at_init\":true}]}",
           "experiments[1]: at_init: a stage with \"from\" prunes its parent's trained model");
    /* structured pruning of a layer it cannot slice, on the parent's model */
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"prune\",\"from\":\"prune\",\"method\":\"neuron_l1\",\"sparsity\":0.5,"
                "\"layers\":\"fc3\"}]}",
           "cannot slice layer 'fc3' (linear): its outputs are the model's logits");
    reject(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":\"prune\",\"where\":{\"method\":[]}}]}",
           "empty list matches nothing");
    /* validation 0: a best selection would have nothing to read */
    reject(HEAD "\"validation\":0,\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"from\":\"prune\",\"best\":{}}]}",
           "best: selection reads the validation split");
}

/* A stage's rows are grouped by their parent's settings: the label always
 * names the parent, so leaving the seed out (the report's group) gives one
 * group per parent setting with the two seeds in it, never two sparsities
 * or methods together. */
Test(pipeline, stage_groups_keep_the_lineage_and_average_seeds_only) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[" PRUNE ",{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"prune\"}]}", NULL);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job_labels *l = NULL;
    cr_assert_eq(rf_job_labels_new(&ctx, j, &l), RF_OK);
    static const char *const no_seed[] = {"seed", NULL};
    char groups[8][256];
    int n = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_QUANTIZE) continue;
        char label[256];
        rf_job_label_format(l, i, NULL, 0, label, sizeof label);
        cr_assert(strstr(label, " from prune/") != NULL, "a stage names its parent: %s", label);
        rf_job_label_format(l, i, no_seed, 0, groups[n], sizeof groups[n]);
        n++;
    }
    cr_assert_eq(n, 8);
    for (int a = 0; a < n; a++) {
        int same = 0;
        for (int b = 0; b < n; b++) same += strcmp(groups[a], groups[b]) == 0;
        cr_assert_eq(same, 2, "group %s holds %d rows (the two seeds expected)", groups[a], same);
    }
    cr_assert(strstr(groups[0], "magnitude/sparsity=0.5") != NULL, "%s", groups[0]);
    rf_job_labels_free(l);
    rf_job_free(j);
}

/* Every allocation of a pipeline's expansion (outputs, selection, the
 * facts' log) failing in turn: an out-of-memory error, no job, no leak. */
/* Parses txt with the n-th allocation failing, for n = 0, 1, ... until it
 * succeeds: every failure is RF_ERR_NOMEM with no job and nothing leaked. */
static void fail_every_allocation(const char *txt, cJSON *f) {
    int ok = 0;
    for (long n = 0; n < 4000 && !ok; n++) {
        long live = rf_alloc_live();
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        rf_job *j = NULL;
        cJSON *log = cJSON_CreateObject();
        rf_job_fact_log rec = {{rf_job_fact_json, f}, log};
        rf_job_facts facts = {rf_job_fact_record, &rec};
        rf_alloc_fail_after(n);
        rf_status s = rf_job_parse_facts(&ctx, txt, strlen(txt), "t", NULL, &facts, &j);
        rf_alloc_fail_after(-1);
        if (s == RF_OK) { ok = 1; cr_assert_eq(j->n_deferred, 0); rf_job_free(j); }
        else { cr_assert_null(j); cr_assert_eq(s, RF_ERR_NOMEM, "n=%ld: %s", n, ctx.err); }
        cJSON_Delete(log);
        cr_assert_eq(rf_alloc_live(), live, "leak at n=%ld", n);
    }
    cr_assert(ok);
}

Test(pipeline, allocation_failures_are_errors_without_leaks) {
    rf_job *j0 = parse_ok(BEST_JOB, NULL);
    double v[8] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
    const char *st[8] = {"done", "done", "done", "done", "done", "done", "done", "done"};
    cJSON *f = facts_for(j0, v, st);
    rf_job_free(j0);
    fail_every_allocation(BEST_JOB, f);
    cJSON_Delete(f);
    /* a list in `from`, teacher.from, lottery from an earlier model */
    cJSON *none = cJSON_CreateObject();
    fail_every_allocation(HEAD "\"experiments\":[{\"kind\":\"train\",\"name\":\"dense\",\"seed\":[0,1]}," PRUNE ","
                          "{\"kind\":\"quantize\",\"from\":[\"prune\",\"dense\"],\"where\":{\"seed\":0}},"
                          "{\"kind\":\"distill\",\"from\":\"prune\",\"teacher\":{\"from\":\"dense\"}},"
                          "{\"kind\":\"lottery\",\"from\":\"dense\",\"rounds\":1}]}", none);
    cJSON_Delete(none);
}

/* lottery -> quantize: every round is an output (the tickets at each
 * sparsity; round 0 the dense one), a gmp stage takes a model from prune,
 * and the stages' parents are those tasks. */
Test(pipeline, lottery_rounds_and_gmp_stages) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[{\"kind\":\"lottery\",\"name\":\"lth\",\"rounds\":2,\"controls\":[\"reinit\"]},"
                         "{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"lth\",\"where\":{\"control\":\"none\"}},"
                         PRUNE ",{\"kind\":\"gmp\",\"name\":\"g\",\"from\":\"prune\",\"sparsity\":0.95,\"where\":{\"sparsity\":0.9}}]}",
                         NULL);
    cr_assert_eq(count(j, 1, RF_JOB_QUANTIZE), 3, "rounds 0, 1, 2 (the reinit controls filtered out)");
    cr_assert_eq(count(j, 3, RF_JOB_GMP), 4, "two methods x two seeds at 0.9");
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].exp == 1) cr_assert_eq(j->tasks[rf_job_parents(j, i)[0]].kind, RF_JOB_LOTTERY);
        if (j->tasks[i].exp == 3) cr_assert_eq(j->tasks[rf_job_parents(j, i)[0]].kind, RF_JOB_PRUNE);
    }
    rf_job_free(j);
}

/* `from` naming several experiments: one branch per model of each, in the
 * order named; an experiment named twice gives its models once; a `best`
 * ranks across them. */
Test(pipeline, from_a_list_of_experiments) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[{\"kind\":\"train\",\"name\":\"dense\",\"seed\":[0,1]},"
                         "{\"kind\":\"prune\",\"name\":\"mag\",\"from\":\"dense\",\"method\":\"magnitude\",\"sparsity\":[0.5,0.9]},"
                         "{\"kind\":\"prune\",\"name\":\"init\",\"method\":\"snip\",\"at_init\":true,\"sparsity\":[0.5,0.9],\"seed\":[0,1]},"
                         "{\"kind\":\"quantize\",\"name\":\"q\",\"from\":[\"mag\",\"init\",\"mag\"],\"where\":{\"sparsity\":0.9}}]}",
                         NULL);
    cr_assert_eq(count(j, 3, RF_JOB_QUANTIZE), 4, "2 magnitude + 2 snip models at 0.9, the repeated name once");
    int from_mag = 0, from_init = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].exp != 3) continue;
        int p = rf_job_parents(j, i)[0];
        from_mag += j->tasks[p].exp == 1;
        from_init += j->tasks[p].exp == 2;
        cJSON *ps = settings(j, p);
        cr_assert_eq(num(ps, "sparsity"), 0.9);
        cJSON_Delete(ps);
    }
    cr_assert(from_mag == 2 && from_init == 2);
    cr_assert_eq(j->exp_from[3], 1, "the first experiment named");
    rf_job_free(j);
}

/* teacher.from (issue 23: "the teacher is any earlier task"): the teacher
 * is a model of an earlier experiment, the only one selected or the one
 * with the student's seed; `teachers: N` takes the N selected (an
 * ensemble). The distillation's parents are those tasks (so its id holds
 * theirs), and the task equals the one teacher.model describes when the
 * models are the same (one task, deduplicated). */
#define DENSE "{\"kind\":\"train\",\"name\":\"dense\",\"seed\":[0,1]}"
Test(pipeline, teacher_from_pairs_seeds_and_takes_ensembles) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[" DENSE ","
                         "{\"kind\":\"distill\",\"name\":\"kd\",\"seed\":[0,1],\"baseline\":false,\"teacher\":{\"from\":\"dense\"}},"
                         "{\"kind\":\"distill\",\"name\":\"ens\",\"teachers\":2,\"baseline\":false,\"teacher\":{\"from\":\"dense\"}},"
                         "{\"kind\":\"distill\",\"name\":\"one\",\"seed\":0,\"baseline\":false,"
                         "\"teacher\":{\"from\":\"dense\",\"where\":{\"seed\":1}}},"
                         "{\"kind\":\"distill\",\"name\":\"same\",\"seed\":[0,1],\"baseline\":false,\"teacher\":{\"model\":\"lenet-300-100\"}}]}",
                         NULL);
    cr_assert_eq(count(j, 0, RF_JOB_TRAIN), 2);
    cr_assert_eq(count(j, 1, RF_JOB_DISTILL), 2);
    cr_assert_eq(count(j, 2, RF_JOB_DISTILL), 1);
    cr_assert_eq(count(j, 3, RF_JOB_DISTILL), 1);
    cr_assert_eq(count(j, 4, RF_JOB_DISTILL), 0, "teacher.model trains the same dense models: the same tasks");
    cr_assert_eq(count(j, 4, RF_JOB_TRAIN), 0);
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_DISTILL) continue;
        const int32_t *par = rf_job_parents(j, i);
        cJSON *s = settings(j, i);
        cr_assert_null(cJSON_GetObjectItemCaseSensitive(s, "init"), "the student is a fresh model");
        if (j->tasks[i].exp == 2) {
            cr_assert_eq(j->tasks[i].n_parents, 2, "the ensemble: both dense models");
            cr_assert(par[0] != par[1]);
        } else {
            cr_assert_eq(j->tasks[i].n_parents, 1);
            cJSON *ts = settings(j, par[0]);
            cr_assert_eq(j->tasks[par[0]].exp, 0, "the teacher is experiment dense's model");
            double want = j->tasks[i].exp == 3 ? 1 : num(s, "seed");
            cr_assert_eq(num(ts, "seed"), want, "teacher seed %g for student seed %g", num(ts, "seed"), num(s, "seed"));
            cJSON_Delete(ts);
        }
        cJSON_Delete(s);
    }
    rf_job_free(j);
    /* the teacher's id is part of the student's: another teacher, another task */
    rf_job *a = parse_ok(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"seed\":0,\"baseline\":false,"
                         "\"teacher\":{\"from\":\"dense\",\"where\":{\"seed\":0}}}]}", NULL);
    rf_job *b = parse_ok(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"seed\":0,\"baseline\":false,"
                         "\"teacher\":{\"from\":\"dense\",\"where\":{\"seed\":1}}}]}", NULL);
    uint64_t ia = 0, ib = 0;
    for (int i = 0; i < a->n_tasks; i++) if (a->tasks[i].kind == RF_JOB_DISTILL) ia = a->tasks[i].id;
    for (int i = 0; i < b->n_tasks; i++) if (b->tasks[i].kind == RF_JOB_DISTILL) ib = b->tasks[i].id;
    cr_assert(ia && ib && ia != ib);
    rf_job_free(a);
    rf_job_free(b);
}

/* prune -> distill with the teacher from the dense experiment: the pruned
 * student is the last parent (it keeps its mask), the teacher of its seed
 * first; a teacher `best` defers the experiment like a stage's. */
Test(pipeline, teacher_from_with_a_pruned_student_and_deferred_best) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"prune\",\"name\":\"prune\",\"from\":\"dense\","
                         "\"method\":\"magnitude\",\"sparsity\":0.9},"
                         "{\"kind\":\"distill\",\"name\":\"kd\",\"from\":\"prune\",\"teacher\":{\"from\":\"dense\"}},"
                         "{\"kind\":\"distill\",\"name\":\"kdb\",\"teacher\":{\"from\":\"dense\",\"best\":{}}}]}", NULL);
    cr_assert_eq(count(j, 2, RF_JOB_DISTILL), 2);
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].exp != 2) continue;
        const int32_t *par = rf_job_parents(j, i);
        cr_assert_eq(j->tasks[i].n_parents, 2);
        cr_assert_eq(j->tasks[par[0]].kind, RF_JOB_TRAIN);
        cr_assert_eq(j->tasks[par[1]].kind, RF_JOB_PRUNE);
        cJSON *s = settings(j, i), *t = settings(j, par[0]), *st = settings(j, par[1]);
        cr_assert_str_eq(str(s, "init"), "parent");
        cr_assert_eq(num(t, "seed"), num(st, "seed"), "the teacher has the student's seed");
        cJSON_Delete(s); cJSON_Delete(t); cJSON_Delete(st);
    }
    cr_assert_eq(j->n_deferred, 1);
    cr_assert(j->exp_deferred[3]);
    rf_job_free(j);
}

Test(pipeline, teacher_from_refusals_name_the_path) {
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"teacher\":{\"from\":\"dens\"}}]}",
           "experiments[1].teacher.from: no earlier experiment is named \"dens\" (did you mean \"dense\"?)");
    reject(HEAD "\"experiments\":[{\"kind\":\"distill\",\"teacher\":{\"from\":\"dense\"}}," DENSE "]}",
           "experiments[0].teacher.from: \"dense\" is experiments[1], after this one");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"seed\":5,\"teacher\":{\"from\":\"dense\"}}]}",
           "teacher.from: \"dense\" selects 2 models and 0 of them have the student's seed 5");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"teacher\":{\"from\":\"dense\",\"where\":{\"seed\":9}}}]}",
           "teacher.from: \"dense\" with its where/best selects no model");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"teachers\":3,\"teacher\":{\"from\":\"dense\"}}]}",
           "an ensemble of 3 teachers (teachers) needs a selection of 3 models; \"dense\" with its where/best selects 2");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"teacher\":{\"from\":\"dense\",\"model\":\"lenet-5\"}}]}",
           "teacher: give one of \"model\" (trained here), \"from\"");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"teacher\":{\"from\":\"dense\",\"train\":{\"epochs\":2}}}]}",
           "teacher.train: only with teacher.model");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"distill\",\"teacher\":{\"model\":\"lenet-5\",\"where\":{\"seed\":0}}}]}",
           "experiments[1].teacher: where: only with \"from\"");
    reject(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"quantize\",\"name\":\"q\",\"from\":\"dense\"},"
                "{\"kind\":\"distill\",\"teacher\":{\"from\":\"q\"}}]}",
           "experiments[2].teacher: from: its models are int8 (quantize tasks): an int8 model cannot be a teacher");
}

/* lottery and ofa from an earlier experiment: the earlier model is the
 * lottery's round 0 (no round-0 task of its own; rounds 1.. chain from it)
 * and ofa's upstream teacher (no teacher trained). */
Test(pipeline, lottery_and_ofa_start_from_earlier_models) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[" DENSE ",{\"kind\":\"lottery\",\"name\":\"lth\",\"from\":\"dense\",\"rounds\":2},"
                         "{\"kind\":\"ofa\",\"name\":\"ofa\",\"from\":\"dense\",\"sparsity\":0.8,\"qat\":false}]}", NULL);
    cr_assert_eq(count(j, 1, RF_JOB_LOTTERY), 4, "rounds 1 and 2 per dense model");
    cr_assert_eq(count(j, 2, RF_JOB_OFA_SPARSE), 2);
    for (int i = 0; i < j->n_tasks; i++) {
        cJSON *s = settings(j, i);
        if (j->tasks[i].kind == RF_JOB_LOTTERY) {
            cr_assert_gt(num(s, "round"), 0, "no round 0: the dense model is it");
            int p = rf_job_parents(j, i)[0];
            cr_assert_eq(j->tasks[p].kind, num(s, "round") == 1 ? RF_JOB_TRAIN : RF_JOB_LOTTERY);
            if (num(s, "round") == 1) cr_assert_eq(j->tasks[p].exp, 0);
        }
        if (j->tasks[i].kind == RF_JOB_OFA_SPARSE) {
            int p = rf_job_parents(j, i)[0];
            cr_assert_eq(j->tasks[p].exp, 0, "the upstream teacher is the dense experiment's model");
        }
        cJSON_Delete(s);
    }
    rf_job_free(j);
}

/* gmp's start step and initial sparsity: written into the task only when
 * given (ids of gmp tasks without them unchanged), and schedules that
 * cannot hold are refused at validation with the JSON path. */
Test(pipeline, gmp_start_and_initial_sparsity) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.9},"
                         "{\"kind\":\"gmp\",\"sparsity\":0.9,\"prune_start\":0.1,\"initial_sparsity\":0.3}]}", NULL);
    int n = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_GMP) continue;
        cJSON *s = settings(j, i);
        if (j->tasks[i].exp == 0) {
            cr_assert_null(cJSON_GetObjectItemCaseSensitive(s, "prune_start"));
            cr_assert_null(cJSON_GetObjectItemCaseSensitive(s, "initial_sparsity"));
        } else {
            cr_assert_eq(num(s, "prune_start"), 0.1);
            cr_assert_eq(num(s, "initial_sparsity"), 0.3);
        }
        n++;
        cJSON_Delete(s);
    }
    cr_assert_eq(n, 2);
    rf_job_free(j);
    reject(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.9,\"prune_start\":0.75}]}",
           "experiments[0]: prune_start: 0.75 is not before prune_end 0.75");
    reject(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.5,\"initial_sparsity\":0.6}]}",
           "experiments[0]: initial_sparsity: 0.6 is above the final sparsity 0.5");
    reject(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.5,\"initial_sparsity\":1}]}",
           "experiments[0].initial_sparsity: 1 is outside [0, 1)");
}

/* gmp's per-tensor final rates: in the task's settings only when given
 * (ids of gmp tasks without them unchanged); refused at validation, with
 * the JSON path, without layer scope, with a final sparsity of 0 or a rate
 * outside [0, 1]. */
Test(pipeline, gmp_layer_sparsity) {
    rf_job *j = parse_ok(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.9},"
                         "{\"kind\":\"gmp\",\"sparsity\":0.9,\"scope\":\"layer\",\"layer_sparsity\":{\"fc1*\":0.95,\"fc3*\":0.5}}]}",
                         NULL);
    int n = 0;
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_GMP) continue;
        cJSON *s = settings(j, i);
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(s, "layer_sparsity");
        if (j->tasks[i].exp == 0) cr_assert_null(ls);
        else cr_assert(cJSON_IsObject(ls) && cJSON_GetObjectItemCaseSensitive(ls, "fc1*")->valuedouble == 0.95);
        n++;
        cJSON_Delete(s);
    }
    cr_assert_eq(n, 2);
    rf_job_free(j);
    reject(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.9,\"layer_sparsity\":{\"fc1*\":0.95}}]}",
           "experiments[0]: layer_sparsity: per-tensor rates need \"scope\": \"layer\"");
    reject(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0,\"scope\":\"layer\",\"layer_sparsity\":{\"fc1*\":0.95}}]}",
           "experiments[0]: layer_sparsity: needs a final sparsity above 0");
    reject(HEAD "\"experiments\":[{\"kind\":\"gmp\",\"sparsity\":0.9,\"scope\":\"layer\",\"layer_sparsity\":{\"fc1*\":1.5}}]}",
           "experiments[0].layer_sparsity");
}

/* teacher.best resolved: with every dense model ended, the teacher is the
 * one of highest validation accuracy (seed 1 here), whatever the student's
 * seed, and the experiment is no longer deferred. */
Test(pipeline, teacher_best_picks_the_validation_winner) {
    const char *job = HEAD "\"experiments\":[{\"kind\":\"train\",\"name\":\"dense\",\"seed\":[0,1,2]},"
                      "{\"kind\":\"distill\",\"seed\":[0,1],\"baseline\":false,\"teacher\":{\"from\":\"dense\",\"best\":{}}}]}";
    rf_job *j0 = parse_ok(job, NULL);
    cr_assert_eq(j0->n_deferred, 1);
    double v[3] = {0.80, 0.90, 0.85};
    const char *st[3] = {"done", "done", "done"};
    cJSON *f = facts_of_kind(j0, RF_JOB_TRAIN, v, st);
    rf_job_facts facts = {rf_job_fact_json, f};
    rf_job *j = parse_ok(job, &facts);
    cr_assert_eq(j->n_deferred, 0);
    cr_assert_eq(count(j, 1, RF_JOB_DISTILL), 2);
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_DISTILL) continue;
        cr_assert_eq(j->tasks[i].n_parents, 1);
        cJSON *ts = settings(j, rf_job_parents(j, i)[0]);
        cr_assert_eq(num(ts, "seed"), 1, "the validation winner teaches every student");
        cJSON_Delete(ts);
    }
    rf_job_free(j);
    rf_job_free(j0);
    cJSON_Delete(f);
}
