/* Job files: every rejection path with its JSON-path message, grid
 * expansion, DAG shapes, id stability and deduplication, allocation faults. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/job.h"

static rf_status parse(const char *txt, rf_job **j, rf_ctx *ctx) {
    rf_ctx_init(ctx);
    return rf_job_parse(ctx, txt, strlen(txt), "t", j);
}

/* Expects txt to be rejected with a message containing `want`. */
static void reject(const char *txt, const char *want) {
    rf_ctx ctx;
    rf_job *j = NULL;
    rf_status s = parse(txt, &j, &ctx);
    cr_assert_eq(s, RF_ERR_JOB, "accepted (or wrong status %d): %s", s, txt);
    cr_assert_null(j);
    cr_assert(strstr(ctx.err, want) != NULL, "message \"%s\" lacks \"%s\"", ctx.err, want);
}

#define HEAD "{\"dataset\":\"synthetic\",\"model\":\"lenet-300-100\","

Test(job, rejects_with_json_paths) {
    reject("{", "not valid JSON");
    reject("[1]", "(top level): expected an object");
    reject("{\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"noop\"}]}", "dataset: required key missing");
    reject(HEAD "\"experimets\":[]}", "experimets: unknown key (did you mean \"experiments\"?)");
    reject(HEAD "\"experiments\":[]}", "experiments: expected a non-empty list");
    reject(HEAD "\"experiments\":[{\"kind\":\"noop\"},{\"kind\":\"noop\"},{\"kind\":\"prune\",\"method\":\"random\",\"sparsity\":[0.5,1.3]}]}",
           "experiments[2].sparsity[1]: 1.3 is outside [0, 1)");
    reject(HEAD "\"experiments\":[{\"kind\":\"prune\",\"method\":\"magnitud\",\"sparsity\":0.5}]}",
           "experiments[0].method: \"magnitud\" is not one of magnitude, random, obd, snip, grasp, synflow, taylor, filter_l1, slimming, neuron_l1, head (did you mean \"magnitude\"?)");
    reject(HEAD "\"experiments\":[{\"kind\":\"prun\"}]}", "experiments[0].kind: \"prun\" is not one of");
    reject(HEAD "\"experiments\":[{\"kind\":\"prun\"}]}", "did you mean \"prune\"?");
    reject(HEAD "\"experiments\":[{\"method\":\"random\"}]}", "experiments[0].kind: required key missing");
    reject(HEAD "\"experiments\":[{\"kind\":\"prune\",\"sparsity\":0.5}]}", "experiments[0].method: required key missing");
    reject(HEAD "\"experiments\":[{\"kind\":\"prune\",\"method\":\"random\",\"sparstiy\":0.5}]}",
           "experiments[0].sparstiy: unknown key (did you mean \"sparsity\"?)");
    reject(HEAD "\"experiments\":[{\"kind\":\"noop\",\"zzzzqqq\":1}]}", "experiments[0].zzzzqqq: unknown key");
    reject(HEAD "\"train\":{\"lr\":\"x\"},\"experiments\":[{\"kind\":\"noop\"}]}", "train.lr: expected a number, got a string");
    reject(HEAD "\"train\":{\"batch\":1.5},\"experiments\":[{\"kind\":\"noop\"}]}", "train.batch: 1.5 is not an integer");
    reject(HEAD "\"train\":{\"lr\":0},\"experiments\":[{\"kind\":\"noop\"}]}", "train.lr: 0 is outside (0, 10]");
    reject(HEAD "\"train\":{\"lr\":[0.1,0.2]},\"experiments\":[{\"kind\":\"noop\"}]}", "train.lr: a list is not allowed here");
    reject(HEAD "\"experiments\":[{\"kind\":\"prune\",\"method\":[],\"sparsity\":0.5}]}", "experiments[0].method: empty list");
    reject(HEAD "\"experiments\":[{\"kind\":\"prune\",\"method\":\"random\",\"sparsity\":[[0.5]]}]}", "experiments[0].sparsity[0]: nested lists");
    reject(HEAD "\"experiments\":[{\"kind\":\"noop\",\"count\":1,\"count\":2}]}", "experiments[0].count: duplicate key");
    reject(HEAD "\"name\":\"../x\",\"experiments\":[{\"kind\":\"noop\"}]}", "name: \"../x\" is not a valid store name");
    reject(HEAD "\"name\":\"a/b\",\"experiments\":[{\"kind\":\"noop\"}]}", "is not a valid store name");
    reject("{\"dataset\":\"fashon-mnist\",\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"noop\"}]}",
           "dataset: unknown dataset \"fashon-mnist\" (did you mean \"fashion-mnist\"?)");
    reject("{\"dataset\":\"synthetic:abc\",\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"noop\"}]}", "dataset: 'synthetic:abc': expected synthetic[:N[:SEED]]");
    reject(HEAD "\"limits\":{\"retries\":11},\"experiments\":[{\"kind\":\"noop\"}]}", "limits.retries: 11 is outside [0, 10]");
    reject(HEAD "\"experiments\":[{\"kind\":\"lottery\",\"rate\":1}]}", "experiments[0].rate: 1 is outside (0, 1)");
    reject(HEAD "\"experiments\":[{\"kind\":\"lottery\",\"controls\":[\"reinitt\"]}]}",
           "experiments[0].controls[0]: \"reinitt\" is not one of reinit, random (did you mean \"reinit\"?)");
    reject(HEAD "\"experiments\":[{\"kind\":\"distill\"}]}", "experiments[0].teacher: required key missing");
    reject(HEAD "\"experiments\":[{\"kind\":\"distill\",\"teacher\":{\"modle\":\"x\"}}]}",
           "experiments[0].teacher.modle: unknown key (did you mean \"model\"?)");
    reject(HEAD "\"experiments\":[{\"kind\":\"ofa\",\"transfer\":[\"mnist\",3]}]}", "experiments[0].transfer[1]: expected a string, got a number");
    reject(HEAD "\"experiments\":[{\"kind\":\"fail\",\"mode\":\"boom\"}]}", "experiments[0].mode: \"boom\" is not one of");
    reject(HEAD "\"experiments\":[{\"kind\":\"noop\",\"seed\":-1}]}", "experiments[0].seed: -1 is outside");
    reject(HEAD "\"experiments\":[{\"kind\":\"distill\",\"teacher\":{\"model\":\"lenet-300-100\"},\"baseline\":1}]}", "experiments[0].baseline: expected true or false, got a number");
    reject(HEAD "\"experiments\":[7]}", "experiments[0]: expected an object, got a number");
    reject("{\"dataset\":\"synthetic\",\"model\":3,\"experiments\":[{\"kind\":\"noop\"}]}", "model: expected a preset name");
}

Test(job, grid_expansion_and_dedup) {
    rf_ctx ctx;
    rf_job *j;
    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"prune\",\"method\":[\"magnitude\",\"random\"],"
                       "\"sparsity\":[0.5,0.8,0.9],\"seed\":[0,1]},{\"kind\":\"train\",\"seed\":1}]}", &j, &ctx), RF_OK, "%s", ctx.err);
    rf_job_summary s;
    rf_job_summarize(j, &s);
    cr_assert_eq(s.per_kind[RF_JOB_PRUNE], 12);
    cr_assert_eq(s.per_kind[RF_JOB_TRAIN], 2);        /* one dense model per seed, shared */
    cr_assert_eq(j->n_tasks, 14);
    cr_assert_eq(j->n_dedup, 11);                      /* 12 dense requests -> 2, + the train experiment's */
    cr_assert_eq(s.longest_chain, 2);
    /* every prune's parent is the dense model with its seed */
    for (int i = 0; i < j->n_tasks; i++) {
        if (j->tasks[i].kind != RF_JOB_PRUNE) continue;
        cr_assert_eq(j->tasks[i].n_parents, 1);
        int p = rf_job_parents(j, i)[0];
        cr_assert_eq(j->tasks[p].kind, RF_JOB_TRAIN);
        const char *ps = rf_job_settings(j, p), *cs = rf_job_settings(j, i);
        cr_assert((strstr(ps, "\"seed\":0") != NULL) == (strstr(cs, "\"seed\":0") != NULL));
    }
    /* settings are canonical: keys sorted */
    const char *st = rf_job_settings(j, 0);
    cr_assert(strstr(st, "\"batch\"") < strstr(st, "\"data\""));
    rf_job_free(j);
}

static void ids(const char *txt, uint64_t *out, int *n) {
    rf_ctx ctx;
    rf_job *j;
    cr_assert_eq(parse(txt, &j, &ctx), RF_OK, "%s", ctx.err);
    *n = j->n_tasks;
    for (int i = 0; i < j->n_tasks; i++) out[i] = j->tasks[i].id;
    rf_job_free(j);
}

Test(job, id_stability) {
    uint64_t a[64], b[64], c[64], d[64];
    int na, nb, nc, nd;
    ids(HEAD "\"train\":{\"lr\":0.01},\"experiments\":[{\"kind\":\"prune\",\"method\":\"random\",\"sparsity\":[0.5,0.9]}]}", a, &na);
    /* same content, keys in another order, a default written out: same ids */
    ids("{\"experiments\":[{\"sparsity\":[0.5,0.9],\"method\":\"random\",\"kind\":\"prune\",\"scope\":\"global\"}],"
        "\"model\":\"lenet-300-100\",\"train\":{\"lr\":0.01,\"batch\":128},\"dataset\":\"synthetic\"}", b, &nb);
    cr_assert_eq(na, 3); cr_assert_eq(nb, 3);
    for (int i = 0; i < na; i++) cr_assert_eq(a[i], b[i]);
    /* an edited prune setting changes only that task's id */
    ids(HEAD "\"train\":{\"lr\":0.01},\"experiments\":[{\"kind\":\"prune\",\"method\":\"random\",\"sparsity\":[0.5,0.8]}]}", c, &nc);
    cr_assert_eq(c[0], a[0]);
    cr_assert_eq(c[1], a[1]);
    cr_assert_neq(c[2], a[2]);
    /* a changed training setting changes the dense id and, through the parent, every child */
    ids(HEAD "\"train\":{\"lr\":0.02},\"experiments\":[{\"kind\":\"prune\",\"method\":\"random\",\"sparsity\":[0.5,0.9]}]}", d, &nd);
    for (int i = 0; i < nd; i++) cr_assert_neq(d[i], a[i]);
    char hx[17];
    uint64_t back;
    rf_job_id_hex(a[0], hx);
    cr_assert_eq(strlen(hx), 16);
    cr_assert_eq(rf_job_id_parse(hx, &back), 0);
    cr_assert_eq(back, a[0]);
    cr_assert_neq(rf_job_id_parse("xyz", &back), 0);
}

Test(job, dag_shapes) {
    rf_ctx ctx;
    rf_job *j;
    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"lottery\",\"rounds\":3,\"controls\":[\"reinit\"]}]}", &j, &ctx), RF_OK, "%s", ctx.err);
    rf_job_summary s;
    rf_job_summarize(j, &s);
    cr_assert_eq(j->n_tasks, 7);   /* round 0 (dense) + 3 rounds + 3 controls */
    cr_assert_eq(s.per_kind[RF_JOB_LOTTERY], 7);
    cr_assert_eq(s.longest_chain, 4); /* r0 -> r1 -> r2 -> r3 (control r3 hangs off r2) */
    int32_t h[16];
    rf_job_heights(j, h);
    cr_assert_eq(h[0], 4);
    for (int i = 1; i < j->n_tasks; i++) {
        cr_assert_eq(j->tasks[i].n_parents, 1);
        cr_assert(strstr(rf_job_settings(j, i), "\"prune_fraction\":0.2") != NULL);
    }
    rf_job_free(j);

    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"ofa\",\"transfer\":[\"mnist\",\"synthetic:500\"]}]}", &j, &ctx), RF_OK, "%s", ctx.err);
    rf_job_summarize(j, &s);
    cr_assert_eq(j->n_tasks, 8);   /* teacher, sparse, 2 x (task teacher, transfer, qat) */
    cr_assert_eq(s.per_kind[RF_JOB_OFA_TRANSFER], 2);
    cr_assert_eq(s.per_kind[RF_JOB_OFA_QAT], 2);
    cr_assert_eq(s.longest_chain, 4);
    for (int i = 0; i < j->n_tasks; i++)
        if (j->tasks[i].kind == RF_JOB_OFA_TRANSFER) {
            cr_assert_eq(j->tasks[i].n_parents, 2);
            cr_assert_eq(j->tasks[rf_job_parents(j, i)[0]].kind, RF_JOB_OFA_SPARSE);
        }
    rf_job_free(j);

    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"distill\",\"teacher\":{\"model\":\"lenet-300-100\"},"
                       "\"temperature\":[1,20]},{\"kind\":\"quantize\",\"mode\":[\"ptq\",\"qat\"]},"
                       "{\"kind\":\"fail\",\"mode\":\"crash\",\"children\":2}]}", &j, &ctx), RF_OK, "%s", ctx.err);
    rf_job_summarize(j, &s);
    /* the teacher and the student-alone baseline are the same model here: one task */
    cr_assert_eq(s.per_kind[RF_JOB_TRAIN], 1);
    cr_assert_eq(s.per_kind[RF_JOB_DISTILL], 2);
    cr_assert_eq(s.per_kind[RF_JOB_QUANTIZE], 2);
    cr_assert_eq(s.per_kind[RF_JOB_FAIL], 1);
    cr_assert_eq(s.per_kind[RF_JOB_NOOP], 2);
    rf_job_free(j);
}

Test(job, allocation_failures_are_errors_without_leaks) {
    const char *txt = HEAD "\"experiments\":[{\"kind\":\"lottery\",\"rounds\":2},{\"kind\":\"prune\",\"method\":\"snip\",\"sparsity\":[0.1,0.2]}]}";
    int ok = 0;
    for (long n = 0; n < 400 && !ok; n++) {
        long live = rf_alloc_live();
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        rf_job *j = NULL;
        rf_alloc_fail_after(n);
        rf_status s = rf_job_parse(&ctx, txt, strlen(txt), "t", &j);
        rf_alloc_fail_after(-1);
        if (s == RF_OK) { ok = 1; rf_job_free(j); }
        else { cr_assert_null(j); cr_assert_eq(s, RF_ERR_NOMEM, "n=%ld: %s", n, ctx.err); }
        cr_assert_eq(rf_alloc_live(), live, "leak at n=%ld", n);
    }
    cr_assert(ok);
}

Test(job, edit_distance) {
    cr_assert_eq(rf_job_edit_distance("kitten", "sitting"), 3);
    cr_assert_eq(rf_job_edit_distance("sparstiy", "sparsity"), 1);
    cr_assert_eq(rf_job_edit_distance("", "abc"), 3);
    cr_assert_eq(rf_job_edit_distance("same", "same"), 0);
}

/* Engine options (raffle/engine.h): checked against the engine table, part
 * of every task's settings (and id) when given, in one canonical form
 * whatever the spelling, experiment-level over top-level. */
Test(job, engine_options_are_settings) {
    reject(HEAD "\"engine\":{\"conf\":\"gemm\"},\"experiments\":[{\"kind\":\"train\"}]}",
           "engine.conf: unknown engine option (did you mean \"conv\"?)");
    reject(HEAD "\"engine\":{\"conv\":\"fast\"},\"experiments\":[{\"kind\":\"train\"}]}",
           "engine.conv: engine option conv: \"fast\" is not one of auto, winograd, direct, gemm, dense, winograd4, auto2, auto3");
    reject(HEAD "\"experiments\":[{\"kind\":\"train\",\"engine\":{\"tb_chunk\":-1}}]}", "engine.tb_chunk");
    rf_ctx ctx;
    rf_job *a, *b, *c;
    cr_assert_eq(parse(HEAD "\"engine\":{\"conv\":\"gemm\",\"tb_chunk\":\"64\"},\"experiments\":[{\"kind\":\"train\"}]}", &a, &ctx),
                 RF_OK, "%s", ctx.err);
    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"train\",\"engine\":{\"tb_chunk\":64,\"conv\":3}}]}", &b, &ctx),
                 RF_OK, "%s", ctx.err);
    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"train\"}]}", &c, &ctx), RF_OK, "%s", ctx.err);
    cr_assert(strstr(rf_job_settings(a, 0), "\"engine\":{\"conv\":\"gemm\",\"tb_chunk\":64}") != NULL, "%s",
              rf_job_settings(a, 0));
    cr_assert_eq(a->tasks[0].id, b->tasks[0].id, "the same options spelled two ways are one task");
    cr_assert_neq(a->tasks[0].id, c->tasks[0].id, "engine options change floats: they are part of the id");
    cr_assert(strstr(rf_job_settings(c, 0), "engine") == NULL, "no engine given: none written (ids unchanged)");
    rf_job_free(a); rf_job_free(b); rf_job_free(c);
}

/* The thread count (engine option threads) is the job's: the top-level
 * "engine" takes it, it is never in a task's settings or id (results do not
 * depend on it), and an experiment's "engine" refuses it with the place to
 * put it. */
Test(job, engine_threads_is_the_jobs_not_a_setting) {
    reject(HEAD "\"experiments\":[{\"kind\":\"train\",\"engine\":{\"threads\":2}}]}",
           "experiments[0].engine.threads: does not change results, so it is not a task's setting (jobs: the "
           "top-level engine.threads; command line: --threads)");
    reject(HEAD "\"engine\":{\"threads\":-1},\"experiments\":[{\"kind\":\"train\"}]}", "engine.threads");
    rf_ctx ctx;
    rf_job *a, *b, *c;
    cr_assert_eq(parse(HEAD "\"engine\":{\"threads\":3},\"experiments\":[{\"kind\":\"train\"}]}", &a, &ctx), RF_OK, "%s", ctx.err);
    cr_assert_eq(parse(HEAD "\"engine\":{\"threads\":\"2\",\"conv\":\"gemm\"},\"experiments\":[{\"kind\":\"train\"}]}", &b, &ctx),
                 RF_OK, "%s", ctx.err);
    cr_assert_eq(parse(HEAD "\"experiments\":[{\"kind\":\"train\"}]}", &c, &ctx), RF_OK, "%s", ctx.err);
    cr_assert_eq(a->threads, 3);
    cr_assert_eq(b->threads, 2);
    cr_assert_eq(c->threads, 0, "not given: the worker's default");
    cr_assert(strstr(rf_job_settings(a, 0), "threads") == NULL, "%s", rf_job_settings(a, 0));
    cr_assert(strstr(rf_job_settings(b, 0), "\"engine\":{\"conv\":\"gemm\"}") != NULL, "%s", rf_job_settings(b, 0));
    cr_assert_eq(a->tasks[0].id, c->tasks[0].id, "threads are not part of the id");
    rf_job_free(a); rf_job_free(b); rf_job_free(c);
}

/* ---- every error at once; models and files checked at validate time ----------------
 * Issue 19, defect 11 ("lenet-300-1OO" and a spec path that does not exist
 * were accepted, every task then failed at run time) and issue 23 (validate
 * reports every error of a job at once, each with its JSON path; a typo in
 * a model name gets a did-you-mean). */

static int parse_all(const char *txt, rf_diag *d, rf_ctx *ctx) {
    rf_ctx_init(ctx);
    memset(d, 0, sizeof *d);
    ctx->diag = d;
    rf_job *j = NULL;
    rf_status s = rf_job_parse(ctx, txt, strlen(txt), "t", &j);
    rf_job_free(j);
    return s;
}

static void has_line(const rf_diag *d, const char *want) {
    char line[RF_ERR_MAX];
    for (int i = 0; i < d->n; i++) {
        rf_diag_line(d, i, line, sizeof line);
        if (strstr(line, want)) return;
    }
    cr_assert_fail("no error line contains \"%s\" (of %d: %s)", want, d->n, d->lines.p ? d->lines.p : "");
}

Test(job_validate, every_error_at_once_with_its_json_path) {
    const char *txt = "{\"dataset\":\"synthetic\",\"model\":\"lenet5\",\"seed\":-1,\"train\":{\"lr\":0,\"epochs\":-1},"
                      "\"experiments\":[{\"kind\":\"prune\",\"method\":\"magnitud\",\"sparsity\":[0.5,1.3]},"
                      "{\"kind\":\"distill\",\"teacher\":{\"model\":\"lenet-300-1OO\"}},"
                      "{\"kind\":\"train\",\"model\":\"/nonexistent/m.json\"},{\"kind\":\"nope\"},{\"method\":\"x\"}]}";
    rf_ctx ctx;
    rf_diag d;
    cr_assert_eq(parse_all(txt, &d, &ctx), RF_ERR_JOB);
    cr_assert_eq(d.n, 10, "%d errors:\n%s", d.n, d.lines.p);
    has_line(&d, "model: unknown model \"lenet5\" (did you mean \"lenet-5\"?)");
    has_line(&d, "seed: -1 is outside");
    has_line(&d, "train.lr: 0 is outside (0, 10]");
    has_line(&d, "train.epochs: -1 is outside [0, 1e+06]");
    has_line(&d, "experiments[0].method: \"magnitud\" is not one of");
    has_line(&d, "experiments[0].sparsity[1]: 1.3 is outside [0, 1)");
    has_line(&d, "experiments[1].teacher.model: unknown model \"lenet-300-1OO\" (did you mean \"lenet-300-100\"?)");
    has_line(&d, "experiments[2].model: /nonexistent/m.json: No such file or directory");
    has_line(&d, "experiments[3].kind: \"nope\" is not one of");
    has_line(&d, "experiments[4].kind: required key missing");
    /* ctx holds the first, as without a diag */
    cr_assert(strstr(ctx.err, "model: unknown model \"lenet5\""), "%s", ctx.err);
    rf_diag_free(&d);
    /* a job that stops before its experiments (none given) still reports
     * every top-level error, the first in ctx */
    const char *top = "{\"dataset\":\"synthetic\",\"model\":\"lenet5\",\"seed\":-1}";
    cr_assert_eq(parse_all(top, &d, &ctx), RF_ERR_JOB);
    cr_assert_eq(d.n, 3, "%s", d.lines.p);
    has_line(&d, "experiments: required key missing");
    cr_assert(strstr(ctx.err, "model: unknown model \"lenet5\""), "%s", ctx.err);
    rf_diag_free(&d);
    /* without a diag: the first error only, nothing recorded */
    rf_job *j = NULL;
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_job_parse(&ctx, txt, strlen(txt), "t", &j), RF_ERR_JOB);
    cr_assert(strstr(ctx.err, "model: unknown model \"lenet5\""), "%s", ctx.err);
}

Test(job_validate, model_specs_and_dataset_files_are_checked_before_any_task) {
    char dir[] = "/tmp/raffle-validate-XXXXXX", spec[128], txt[1024];
    cr_assert_not_null(mkdtemp(dir));
    /* a spec that does not plan: the error names the file and the layer */
    snprintf(spec, sizeof spec, "%s/bad.json", dir);
    FILE *f = fopen(spec, "w");
    fputs("{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":0}]}", f);
    fclose(f);
    snprintf(txt, sizeof txt, "{\"dataset\":\"%s/a.npy,%s/b.npy,%s/c.npy,%s/d.npy\",\"model\":\"%s\","
             "\"experiments\":[{\"kind\":\"noop\"}]}", dir, dir, dir, dir, spec);
    rf_ctx ctx;
    rf_diag d;
    cr_assert_eq(parse_all(txt, &d, &ctx), RF_ERR_JOB);
    cr_assert_eq(d.n, 2, "%s", d.lines.p);
    char want[256];
    snprintf(want, sizeof want, "dataset: %s/a.npy: No such file or directory", dir);
    has_line(&d, want);
    snprintf(want, sizeof want, "model: %s: layers[1]", spec);
    has_line(&d, want);
    rf_diag_free(&d);
    /* a preset and a spec that plans pass */
    f = fopen(spec, "w");
    fputs("{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":10}]}", f);
    fclose(f);
    snprintf(txt, sizeof txt, "{\"dataset\":\"synthetic\",\"model\":\"%s\",\"experiments\":[{\"kind\":\"noop\"},"
             "{\"kind\":\"train\",\"model\":\"lenet-5\"}]}", spec);
    cr_assert_eq(parse_all(txt, &d, &ctx), RF_OK, "%s", ctx.err);
    cr_assert_eq(d.n, 0);
    remove(spec);
    remove(dir);
}
