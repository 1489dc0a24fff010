/* Resumable training state (task.h rf_task_train_resumable, docs/hpc.md) and
 * the Slurm helpers of the coordinator (coord.h): a "train" task stopped and
 * resumed twice writes the same model.rckpt bytes as an uninterrupted run;
 * periodic saves hold the latest step; a state from another model is
 * refused; scontrol's EndTime is parsed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "raffle/ckpt.h"
#include "raffle/coord.h"
#include "raffle/task.h"

/* The kind table names kinds through weak symbols; this strong reference
 * links task_train.o into the test (as the raffle binary's CLI does). */
rf_status rf_task_train(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status (*const test_resume_train_entry)(rf_ctx *, const rf_task_io *, cJSON *) = rf_task_train;

#define SETTINGS "{\"kind\":\"train\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"iterations\":20," \
                 "\"batch\":32,\"optimizer\":\"adam\",\"eval_limit\":64}"

static void read_all(const char *path, unsigned char **b, size_t *n) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_read_file(&ctx, path, b, n), RF_OK, "%s", rf_ctx_error(&ctx));
}

/* Runs the task in dir; stop: preempt after the first step of this attempt.
 * metrics (may be NULL) receives the task's metrics (new; cJSON_Delete). */
static rf_status run_m(const char *json, const char *dir, const char *resume, double every, int stop, cJSON **metrics) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *s = cJSON_Parse(json);
    cr_assert_not_null(s);
    volatile int flag = stop;
    rf_task_io io = {.settings = s, .out_dir = dir, .stop_flag = &flag, .resume_from = resume, .resume_every_s = every};
    cJSON *m = cJSON_CreateObject();
    rf_status st = rf_task_run(&ctx, &io, m);
    if (st != RF_OK && st != RF_ERR_PREEMPTED) cr_log_error("%s", rf_ctx_error(&ctx));
    if (metrics) *metrics = m;
    else cJSON_Delete(m);
    cJSON_Delete(s);
    return st;
}

static rf_status run(const char *json, const char *dir, const char *resume, double every, int stop) {
    return run_m(json, dir, resume, every, stop, NULL);
}

/* Runs the task in dir stopped after every step, each attempt resuming
 * from the last one's state (moved to keep/resume.rckpt), until it
 * finishes: returns the number of preempted attempts; *metrics gets the
 * finishing attempt's metrics (new; cJSON_Delete). */
static int run_preempted_every_step(const char *json, const char *dir, const char *keep, cJSON **metrics) {
    char state[300], kept[300];
    snprintf(state, sizeof state, "%s/resume.rckpt", dir);
    snprintf(kept, sizeof kept, "%s/resume.rckpt", keep);
    int attempts = 0;
    rf_status st;
    cJSON *got = NULL;
    while ((st = run_m(json, dir, attempts ? kept : NULL, 0, 1, &got)) == RF_ERR_PREEMPTED) {
        cJSON_Delete(got);
        got = NULL;
        cr_assert_eq(rename(state, kept), 0);
        cr_assert_lt(++attempts, 20);
    }
    cr_assert_eq(st, RF_OK);
    *metrics = got;
    return attempts;
}

/* DIR1/model.rckpt and DIR2/model.rckpt hold the same bytes. */
static void assert_same_model(const char *dir1, const char *dir2) {
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/model.rckpt", dir1);
    snprintf(b, sizeof b, "%s/model.rckpt", dir2);
    unsigned char *x, *y;
    size_t nx, ny;
    read_all(a, &x, &nx);
    read_all(b, &y, &ny);
    cr_assert_eq(nx, ny, "checkpoint sizes differ");
    cr_assert_eq(memcmp(x, y, nx), 0, "resumed checkpoint differs from the uninterrupted one");
    rf_free(x); rf_free(y);
}

static int64_t saved_step(const char *path) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_read(&ctx, path, &c), RF_OK, "%s", rf_ctx_error(&ctx));
    cJSON *meta = cJSON_Parse(c->meta_json);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(meta, "step");
    cr_assert(cJSON_IsNumber(st));
    int64_t s = (int64_t)st->valuedouble;
    cJSON_Delete(meta);
    rf_ckpt_free(c);
    return s;
}

static void rm_dir(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(resume, stopped_twice_is_byte_identical) {
    char ref[] = "/tmp/raffle_res_ref_XXXXXX", dir[] = "/tmp/raffle_res_XXXXXX", keep[] = "/tmp/raffle_res_keep_XXXXXX";
    cr_assert_not_null(mkdtemp(ref));
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(mkdtemp(keep));
    char p[300], state[300], kept[300];
    cr_assert_eq(run(SETTINGS, ref, NULL, 0, 0), RF_OK);
    snprintf(state, sizeof state, "%s/resume.rckpt", dir);
    snprintf(kept, sizeof kept, "%s/resume.rckpt", keep);
    /* attempt 1: stopped after step 0, state saved at step 1 */
    cr_assert_eq(run(SETTINGS, dir, NULL, 0, 1), RF_ERR_PREEMPTED);
    snprintf(p, sizeof p, "%s/model.rckpt", dir);
    struct stat st;
    cr_assert_neq(stat(p, &st), 0, "a preempted task wrote model.rckpt");
    cr_assert_eq(saved_step(state), 1);
    cr_assert_eq(rename(state, kept), 0);
    /* attempt 2 continues from step 1 and is stopped again after one step */
    cr_assert_eq(run(SETTINGS, dir, kept, 0, 1), RF_ERR_PREEMPTED);
    cr_assert_eq(saved_step(state), 2);
    cr_assert_eq(rename(state, kept), 0);
    /* attempt 3 finishes */
    cr_assert_eq(run(SETTINGS, dir, kept, 0, 0), RF_OK);
    assert_same_model(ref, dir);
    rm_dir(ref); rm_dir(dir); rm_dir(keep);
}

/* The selection state survives preemption: stopped after every single step
 * (with validation evaluations every 2 steps in between), the run reports
 * the same best validation accuracy, step and test accuracy at that step
 * (evaluated from the copy of the best model kept in resume.rckpt) as the
 * uninterrupted run, and writes the same checkpoint. */
#define SEL_SETTINGS "{\"kind\":\"train\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"iterations\":12," \
                     "\"batch\":32,\"optimizer\":\"sgd\",\"lr\":0.3,\"eval_every\":2,\"validation\":64,\"augment\":\"crop:2+flip\"}"

Test(resume, selection_state_survives_every_preemption) {
    char ref[] = "/tmp/raffle_sel_ref_XXXXXX", dir[] = "/tmp/raffle_sel_XXXXXX", keep[] = "/tmp/raffle_sel_keep_XXXXXX";
    cr_assert_not_null(mkdtemp(ref));
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(mkdtemp(keep));
    cJSON *want = NULL, *got = NULL;
    cr_assert_eq(run_m(SEL_SETTINGS, ref, NULL, 0, 0, &want), RF_OK);
    int attempts = run_preempted_every_step(SEL_SETTINGS, dir, keep, &got);
    cr_assert_eq(attempts, 12, "one step per attempt (%d attempts)", attempts);
    static const char *const keys[] = {"best_val_accuracy", "best_iteration", "test_accuracy_at_best_val",
                                       "val_accuracy", "test_accuracy"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(want, keys[i]), *y = cJSON_GetObjectItemCaseSensitive(got, keys[i]);
        cr_assert(cJSON_IsNumber(x) && cJSON_IsNumber(y), "%s", keys[i]);
        cr_assert_eq(x->valuedouble, y->valuedouble, "%s: %.17g uninterrupted, %.17g resumed", keys[i], x->valuedouble,
                     y->valuedouble);
    }
    /* the best step is not the last one (lr 0.3 overshoots), so the test
     * accuracy at it came from the kept copy (in resume.rckpt) */
    const double bi = cJSON_GetObjectItemCaseSensitive(want, "best_iteration")->valuedouble;
    cr_assert(bi >= 2 && bi < 12 && (int)bi % 2 == 0, "best_iteration %g", bi);
    assert_same_model(ref, dir);
    cJSON_Delete(want);
    cJSON_Delete(got);
    rm_dir(ref); rm_dir(dir); rm_dir(keep);
}

Test(resume, periodic_save_and_foreign_state) {
    char dir[] = "/tmp/raffle_res_per_XXXXXX", other[] = "/tmp/raffle_res_oth_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(mkdtemp(other));
    char state[300];
    snprintf(state, sizeof state, "%s/resume.rckpt", dir);
    /* a tiny period saves after every step: the last save is the end */
    cr_assert_eq(run(SETTINGS, dir, NULL, 1e-9, 0), RF_OK);
    cr_assert_eq(saved_step(state), 20);
    /* a state of a different model is refused, not half-applied */
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *s = cJSON_Parse("{\"kind\":\"train\",\"data\":\"synthetic:256\",\"model\":\"mlp-800x2\",\"iterations\":4,\"batch\":32}");
    rf_ctx_init(&ctx);
    volatile int flag = 0;
    rf_task_io io = {.settings = s, .out_dir = other, .stop_flag = &flag, .resume_from = state};
    cJSON *m = cJSON_CreateObject();
    rf_status st = rf_task_run(&ctx, &io, m);
    cr_assert_eq(st, RF_ERR_FORMAT, "foreign state: %s (%s)", rf_strerror(st), rf_ctx_error(&ctx));
    cJSON_Delete(m);
    cJSON_Delete(s);
    rm_dir(dir); rm_dir(other);
}

/* Issue 19, defect 5: a resume point names its task and settings; another
 * task's (seed 0's state in seed 1's directory) is refused, not continued. */
static rf_status run_as(const char *dir, const char *resume, const char *id, const char *hash, int stop, char *err, size_t en) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *s = cJSON_Parse(SETTINGS);
    volatile int flag = stop;
    rf_task_io io = {.settings = s, .out_dir = dir, .stop_flag = &flag, .resume_from = resume,
                     .task_id = id, .settings_hash = hash};
    cJSON *m = cJSON_CreateObject();
    rf_status st = rf_task_run(&ctx, &io, m);
    snprintf(err, en, "%s", rf_ctx_error(&ctx));
    cJSON_Delete(m);
    cJSON_Delete(s);
    return st;
}

Test(resume, state_of_another_task_is_refused) {
    char dir[] = "/tmp/raffle_res_id_XXXXXX", other[] = "/tmp/raffle_res_id2_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(mkdtemp(other));
    char state[300], err[RF_ERR_MAX];
    snprintf(state, sizeof state, "%s/resume.rckpt", dir);
    const char *id0 = "00000000000000a0", *id1 = "00000000000000a1", *h = "0123456789abcdef", *h2 = "fedcba9876543210";
    cr_assert_eq(run_as(dir, NULL, id0, h, 1, err, sizeof err), RF_ERR_PREEMPTED, "%s", err);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_read(&ctx, state, &c), RF_OK);
    cr_assert(strstr(c->meta_json, "\"task\":\"00000000000000a0\"") && strstr(c->meta_json, "\"settings_hash\":\"0123456789abcdef\""),
              "the resume point does not name its task: %s", c->meta_json);
    cr_assert(strstr(c->meta_json, "\"total_steps\":20"), "%s", c->meta_json);
    rf_ckpt_free(c);
    /* another task with the very same settings (the seed-copy case) */
    rf_status st = run_as(other, state, id1, h, 0, err, sizeof err);
    cr_assert_eq(st, RF_ERR_FORMAT, "another task's state was accepted: %s", rf_strerror(st));
    cr_assert(strstr(err, "another task"), "%s", err);
    /* the same id under other settings */
    st = run_as(other, state, id0, h2, 0, err, sizeof err);
    cr_assert_eq(st, RF_ERR_FORMAT, "a state saved under other settings was accepted: %s", rf_strerror(st));
    /* its own task continues */
    cr_assert_eq(run_as(other, state, id0, h, 0, err, sizeof err), RF_OK, "%s", err);
    rm_dir(dir); rm_dir(other);
}

Test(slurm, end_time_from_scontrol) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    double t = -1;
    const char *out = "JobId=7 JobName=raffle\n   RunTime=00:00:03 TimeLimit=00:10:00\n"
                      "   StartTime=2026-11-22T13:00:00 EndTime=2026-11-22T13:10:00 Deadline=N/A\n";
    cr_assert_eq(rf_slurm_parse_end_time(&ctx, out, &t), RF_OK, "%s", rf_ctx_error(&ctx));
    struct tm tm = {.tm_year = 126, .tm_mon = 10, .tm_mday = 22, .tm_hour = 13, .tm_min = 10, .tm_isdst = -1};
    cr_assert_eq(t, (double)mktime(&tm));
    cr_assert_eq(rf_slurm_parse_end_time(&ctx, "JobId=7 EndTime=Unknown Deadline=N/A", &t), RF_OK);
    cr_assert_eq(t, 0);
    cr_assert_eq(rf_slurm_parse_end_time(&ctx, "JobId=7 EndTime=tomorrow", &t), RF_ERR_FORMAT);
    cr_assert_eq(rf_slurm_parse_end_time(&ctx, "JobId=7 StartTime=2026-11-22T13:00:00", &t), RF_ERR_FORMAT);
}

Test(slurm, ntasks_and_env) {
    unsetenv("SLURM_JOB_ID");
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *e = (cJSON *)1;
    cr_assert_eq(rf_slurm_env(&ctx, &e), RF_OK);
    cr_assert_null(e, "metadata outside a Slurm job");
    setenv("SLURM_NTASKS", "3", 1);
    cr_assert_eq(rf_slurm_ntasks(), 3);
    setenv("SLURM_NTASKS", "3(x2)", 1);
    cr_assert_eq(rf_slurm_ntasks(), 0);
    setenv("SLURM_JOB_ID", "42", 1);
    setenv("SLURM_ARRAY_TASK_ID", "5", 1);
    setenv("SLURM_JOB_NODELIST", "n[1-2]", 1);
    setenv("SLURM_RESTART_COUNT", "2", 1);
    cr_assert_eq(rf_slurm_env(&ctx, &e), RF_OK);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "job_id")->valuestring, "42");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "array_task_id")->valuestring, "5");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "nodelist")->valuestring, "n[1-2]");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(e, "restart_count")->valuedouble, 2);
    cJSON_Delete(e);
    unsetenv("SLURM_JOB_ID"); unsetenv("SLURM_NTASKS"); unsetenv("SLURM_ARRAY_TASK_ID");
    unsetenv("SLURM_JOB_NODELIST"); unsetenv("SLURM_RESTART_COUNT");
}

/* The lottery's rewind point (round 0, rewind "step:K") is part of its
 * resumable state: preempted after every step past K, each attempt in a new
 * directory as a sweep runs it, the task still writes the rewind point and
 * the model of the uninterrupted run. Before, the resumed attempt never
 * reached step K again and failed at the end ("step K was never reached"). */
rf_status rf_task_lottery(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status (*const test_resume_lottery_entry)(rf_ctx *, const rf_task_io *, cJSON *) = rf_task_lottery;

#define LTH_SETTINGS "{\"kind\":\"lottery\",\"round\":0,\"rewind\":\"step:2\",\"data\":\"synthetic:256\"," \
                     "\"model\":\"lenet-300-100\",\"iterations\":6,\"batch\":32,\"optimizer\":\"sgd\",\"lr\":0.1}"

static void assert_same_file(const char *dir1, const char *dir2, const char *name) {
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/%s", dir1, name);
    snprintf(b, sizeof b, "%s/%s", dir2, name);
    unsigned char *x, *y;
    size_t nx, ny;
    read_all(a, &x, &nx);
    read_all(b, &y, &ny);
    cr_assert(nx == ny && memcmp(x, y, nx) == 0, "%s differs from the uninterrupted run's", name);
    rf_free(x); rf_free(y);
}

Test(resume, lottery_rewind_point_survives_preemption_after_step_k) {
    char ref[] = "/tmp/raffle_lres_ref_XXXXXX", keep[] = "/tmp/raffle_lres_keep_XXXXXX";
    cr_assert_not_null(mkdtemp(ref));
    cr_assert_not_null(mkdtemp(keep));
    cr_assert_eq(run(LTH_SETTINGS, ref, NULL, 0, 0), RF_OK);
    char kept[300], state[300], dirs[8][64];
    snprintf(kept, sizeof kept, "%s/resume.rckpt", keep);
    rf_status st = RF_OK;
    int attempt = 0;
    /* attempt 0 runs to step 3 (past K = 2) before its first stop */
    for (;; attempt++) {
        cr_assert_lt(attempt, 8, "the task never finished");
        snprintf(dirs[attempt], sizeof dirs[attempt], "/tmp/raffle_lres_XXXXXX");
        cr_assert_not_null(mkdtemp(dirs[attempt]));
        if (attempt == 0) {
            for (int i = 0; i < 3; i++) {
                st = run(LTH_SETTINGS, dirs[0], i ? kept : NULL, 0, 1);
                cr_assert_eq(st, RF_ERR_PREEMPTED);
                snprintf(state, sizeof state, "%s/resume.rckpt", dirs[0]);
                cr_assert_eq(rename(state, kept), 0);
            }
            continue;
        }
        st = run(LTH_SETTINGS, dirs[attempt], kept, 0, 1);
        if (st == RF_OK) break;
        cr_assert_eq(st, RF_ERR_PREEMPTED);
        snprintf(state, sizeof state, "%s/resume.rckpt", dirs[attempt]);
        cr_assert_eq(rename(state, kept), 0);
    }
    cr_assert_gt(attempt, 1, "no attempt started past step K");
    assert_same_file(ref, dirs[attempt], "rewind.rckpt");
    assert_same_file(ref, dirs[attempt], "model.rckpt");
    for (int i = 0; i <= attempt; i++) rm_dir(dirs[i]);
    rm_dir(ref); rm_dir(keep);
}

/* Every kind that trains keeps its curve (issue 23), and a preempted one
 * keeps it through resumption like "train": a lottery round stopped after
 * every step reports the uninterrupted run's curve, point for point. */
#define LTH_CURVE "{\"kind\":\"lottery\",\"round\":0,\"rewind\":\"init\",\"data\":\"synthetic:256\"," \
                  "\"model\":\"lenet-300-100\",\"iterations\":6,\"batch\":32,\"optimizer\":\"sgd\",\"lr\":0.1," \
                  "\"eval_every\":2,\"validation\":64}"

Test(resume, lottery_curve_survives_every_preemption) {
    char ref[] = "/tmp/raffle_lcur_ref_XXXXXX", dir[] = "/tmp/raffle_lcur_XXXXXX", keep[] = "/tmp/raffle_lcur_keep_XXXXXX";
    cr_assert_not_null(mkdtemp(ref));
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_not_null(mkdtemp(keep));
    cJSON *want = NULL, *got = NULL;
    cr_assert_eq(run_m(LTH_CURVE, ref, NULL, 0, 0, &want), RF_OK);
    cr_assert_gt(run_preempted_every_step(LTH_CURVE, dir, keep, &got), 2);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(want, "curve"), *b = cJSON_GetObjectItemCaseSensitive(got, "curve");
    cr_assert_eq(cJSON_GetArraySize(a), 3, "evaluations at steps 2, 4, 6");
    cr_assert_eq(cJSON_GetArraySize(b), 3, "the resumed run lost curve points");
    static const char *const keys[] = {"step", "val_accuracy", "val_loss", "train_loss"};
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a, i), keys[k]);
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(b, i), keys[k]);
            cr_assert(cJSON_IsNumber(x) && cJSON_IsNumber(y), "point %d %s", i, keys[k]);
            cr_assert_eq(x->valuedouble, y->valuedouble, "point %d %s: %.17g uninterrupted, %.17g resumed", i, keys[k],
                         x->valuedouble, y->valuedouble);
        }
    assert_same_model(ref, dir);
    cJSON_Delete(want);
    cJSON_Delete(got);
    rm_dir(ref); rm_dir(dir); rm_dir(keep);
}
