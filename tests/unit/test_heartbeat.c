/* Issue 24 pieces a unit test can reach without several MPI ranks (the
 * ranks themselves: tests/integration/sweep_lost.sh, multihost_faults.sh,
 * multihost_hang.sh):
 *   proto    BEAT, DROP and REAP headers round-trip (REAP's process id in
 *            n1); unknown types and the old protocol versions are refused
 *            naming both versions
 *   link     without an open link nothing beats and nothing is silent
 *   exec     a tick that reports "cut off" ends the task child at once,
 *            classified "killed" with the reason; reaping a given-up rank
 *            kills its children (their process groups) and not the rank,
 *            and refuses a process that is not a raffle like this one
 *   sim      the scheduler on the fake transport hands out every task
 *            exactly once (a chain's next link only once it is released),
 *            with fewer or more workers than ready tasks */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "coord/coord_internal.h"
#include "raffle/job.h"

Test(proto, beat_drop_and_reap_round_trip) {
    for (int t = RF_MSG_BEAT; t <= RF_MSG_REAP; t++) {
        rf_coord_msg m = {.version = RF_COORD_PROTO_VERSION, .type = (uint16_t)t, .task = 7, .attempt = 2, .arg = 1,
                          .n1 = 4194303};
        unsigned char b[RF_COORD_HDR_BYTES];
        rf_coord_msg_encode(&m, b);
        rf_coord_msg d;
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        cr_assert_eq(rf_coord_msg_decode(&ctx, b, sizeof b, &d), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(d.type, t);
        cr_assert_eq(d.task, 7u);
        cr_assert_eq(d.arg, 1u);
        cr_assert_eq(d.n1, 4194303u);
    }
}

Test(proto, unknown_type_and_old_version_refused) {
    unsigned char b[RF_COORD_HDR_BYTES];
    rf_coord_msg m = {.version = RF_COORD_PROTO_VERSION, .type = RF_MSG_TYPE_COUNT_};
    rf_coord_msg_encode(&m, b);
    rf_coord_msg d;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_coord_msg_decode(&ctx, b, sizeof b, &d), RF_ERR_MPI);
    cr_assert(strstr(rf_ctx_error(&ctx), "unknown message type"), "%s", rf_ctx_error(&ctx));
    m.type = RF_MSG_BEAT;
    m.version = 2;   /* a build from before REAP (its ranks gather no process ids) */
    rf_coord_msg_encode(&m, b);
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_coord_msg_decode(&ctx, b, sizeof b, &d), RF_ERR_VERSION);
    m.version = 1;   /* a build from before the heartbeats */
    rf_coord_msg_encode(&m, b);
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_coord_msg_decode(&ctx, b, sizeof b, &d), RF_ERR_VERSION);
    char want[64];
    snprintf(want, sizeof want, "protocol version 1, this build speaks %d", RF_COORD_PROTO_VERSION);
    cr_assert(strstr(rf_ctx_error(&ctx), want), "%s", rf_ctx_error(&ctx));
}

Test(link, closed_link_is_inert) {
    coord_link_close();
    cr_assert_eq(coord_link_timeout(), 0);
    cr_assert_eq(coord_link_silence(0), 0);
    cr_assert_eq(coord_link_silence(5), 0);
    cr_assert_eq(coord_link_abandoned(), 0);
    cr_assert_eq(coord_link_dropped(1), 0);
    coord_link_pump();   /* no MPI touched: MPI is not initialised here */
    coord_link_drop(1);
    cr_assert_eq(coord_link_dropped(1), 0);
    coord_link_hush(1);
    coord_link_pump();
    coord_link_hush(0);
    cr_assert_eq(coord_link_heard(1), 0);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    /* one rank, or no timeout: no link at all */
    cr_assert_eq(coord_link_open(&ctx, MPI_COMM_NULL, 0, 1, 5), RF_OK);
    cr_assert_eq(coord_link_timeout(), 0);
    cr_assert_eq(coord_link_open(&ctx, MPI_COMM_NULL, 0, 4, 0), RF_OK);
    cr_assert_eq(coord_link_timeout(), 0);
}

static int ticks;
static int cut_after_five(void *ud) {
    (void)ud;
    return ++ticks >= 5;
}

Test(exec, a_cut_off_tick_kills_the_task_at_once, .timeout = 20) {
    char dir[] = "/tmp/raffle-hb-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char exe[300];
    snprintf(exe, sizeof exe, "%s/sleeper", dir);
    FILE *f = fopen(exe, "w");
    cr_assert_not_null(f);
    fprintf(f, "#!/bin/sh\nsleep 30\n");
    fclose(f);
    chmod(exe, 0755);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    coord_exec_result r;
    ticks = 0;
    double t0 = rf_now();
    cr_assert_eq(coord_exec(&ctx, exe, dir, 0, 0, 1, NULL, 0, cut_after_five, NULL, &r), RF_OK, "%s", rf_ctx_error(&ctx));
    double dt = rf_now() - t0;
    cr_assert_eq(r.cls, RF_FAIL_KILLED, "class %d: %s", r.cls, r.message);
    cr_assert(strstr(r.message, "lost contact with rank 0"), "%s", r.message);
    cr_assert_lt(dt, 5.0, "the child ran on for %.1f s", dt);
    cr_assert_eq(ticks, 5);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static rf_job *chains(int count, int chain) {
    char txt[400];
    snprintf(txt, sizeof txt, "{\"name\":\"sim\",\"dataset\":\"synthetic\",\"model\":\"lenet-300-100\","
                              "\"experiments\":[{\"kind\":\"noop\",\"count\":%d,\"chain\":%d}]}", count, chain);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    cr_assert_eq(rf_job_parse(&ctx, txt, strlen(txt), NULL, &j), RF_OK, "%s", rf_ctx_error(&ctx));
    return j;
}

Test(sim, every_task_once_whatever_the_workers) {
    static const int shapes[][3] = {{200, 1, 7}, {40, 5, 3}, {10, 20, 1000}, {1, 50, 4}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        rf_job *j = chains(shapes[k][0], shapes[k][1]);
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        coord_sim_result r;
        cr_assert_eq(coord_sim(&ctx, j, shapes[k][2], &r), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(r.done, j->n_tasks, "shape %zu: %lld of %d done", k, (long long)r.done, j->n_tasks);
        cr_assert_eq(r.decisions, j->n_tasks, "shape %zu: %lld decisions for %d tasks", k, (long long)r.decisions, j->n_tasks);
        /* only the chains' heads are ready at the start */
        cr_assert_eq(r.queued, shapes[k][0], "shape %zu: %lld ready at the start", k, (long long)r.queued);
        rf_job_free(j);
    }
}

Test(sim, no_worker_is_an_error) {
    rf_job *j = chains(3, 1);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    coord_sim_result r;
    cr_assert_eq(coord_sim(&ctx, j, 0, &r), RF_ERR_INVALID);
    rf_job_free(j);
}

/* A child of this process that sleeps in a new process group with a
 * grandchild of its own (the shape of a stopped rank with its task child):
 * reaping the child kills the grandchild's group, not the child. */
Test(exec, reap_kills_the_children_not_the_rank, .timeout = 20) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t rank = fork();
    cr_assert(rank >= 0);
    if (rank == 0) {
        pid_t task = fork();
        if (task == 0) { setpgid(0, 0); for (;;) pause(); }
        if (write(fds[1], &task, sizeof task) != sizeof task) _exit(3);
        int st;
        waitpid(task, &st, 0);   /* the rank outlives its task */
        _exit(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : 1);
    }
    pid_t task;
    cr_assert_eq(read(fds[0], &task, sizeof task), (ssize_t)sizeof task);
    /* the task has set its group (or dies in it either way) */
    usleep(100000);
    cr_assert_eq(coord_reap_children(1), 0, "init is never reaped");
    cr_assert_eq(coord_reap_children((long)getpid()), 0, "this process's own children are not reaped");
    cr_assert_eq(coord_reap_children((long)rank), 1);
    int st;
    cr_assert_eq(waitpid(rank, &st, 0), rank);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the task was not killed by SIGKILL (status %d)", st);
    close(fds[0]);
    close(fds[1]);
}

/* A process whose command name differs from this one's (here: sleep) is
 * not a rank of this sweep: its children are left alone. */
Test(exec, reap_refuses_another_program, .timeout = 20) {
    pid_t other = fork();
    cr_assert(other >= 0);
    if (other == 0) {
        setpgid(0, 0);   /* the group goes at the end, grandchild too */
        if (fork() == 0) { execlp("sleep", "sleep", "30", (char *)NULL); _exit(2); }
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(2);
    }
    usleep(200000);
    int n = coord_reap_children((long)other);
    kill(-other, SIGKILL);
    cr_assert_eq(n, 0);
    waitpid(other, NULL, 0);
}
