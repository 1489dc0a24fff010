/* Task isolation: each attempt runs as `raffle run DIR` in a child process
 * (fork + exec, so the child starts clean: no MPI state, no threads) under an
 * address-space limit and a wall-clock limit; the way it ends is classified
 * (error, NaN, out of memory, crash, timeout). The child's side, which reads
 * DIR/task.json and runs the kind, lives with the tasks (src/task/runner.c,
 * rf_task_run_dir): the coordinator never links a task. */
#define _GNU_SOURCE
#include "coord/coord_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* AddressSanitizer reserves terabytes of shadow address space at start-up,
 * so under an RLIMIT_AS every task of a sanitizer build would abort before
 * main: such builds (make asan) run tasks without the memory limit. */
#if defined(__SANITIZE_ADDRESS__)
#define AS_LIMIT_WORKS 0
#else
#define AS_LIMIT_WORKS 1
#endif

/* The names `raffle run` writes into result.json (src/task/runner.c,
 * rf_task_status_class) and the ledger records. */
static const char *const class_names[RF_FAIL_COUNT_] = {"", "error", "crash", "oom", "timeout", "nan", "preempted", "killed"};

const char *rf_fail_class_name(int c) { return (c >= 0 && c < RF_FAIL_COUNT_) ? class_names[c] : "?"; }
int rf_fail_class_retryable(int c) { return c == RF_FAIL_CRASH || c == RF_FAIL_TIMEOUT || c == RF_FAIL_KILLED; }

static int class_from_name(const char *s) {
    for (int i = 0; i < RF_FAIL_COUNT_; i++) if (strcmp(class_names[i], s) == 0) return i;
    return RF_FAIL_ERROR;
}

/* Last non-empty line of dir/log.txt into out (for crash messages). */
static void log_tail(const char *dir, char *out, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[1024];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t r = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    if (r <= 0) return;
    buf[r] = '\0';
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r')) buf[--r] = '\0';
    char *nl = strrchr(buf, '\n');
    snprintf(out, n, "%s", nl ? nl + 1 : buf);
}

/* OOM kills the kernel has made so far (/proc/vmstat "oom_kill", which
 * memory-cgroup kills count in too), or -1 where it cannot be read. */
static long long oom_kills(void) {
    FILE *f = fopen("/proc/vmstat", "re");
    if (!f) return -1;
    char line[128];
    long long n = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "oom_kill ", 9) == 0) {
            size_t len = strcspn(line + 9, "\n");
            int64_t v;
            if (rf_parse_i64(NULL, line + 9, len, 0, INT64_MAX, "oom_kill", &v) == RF_OK) n = v;
            break;
        }
    fclose(f);
    return n;
}

int coord_signal_class(int sig, int oom_killed, char *msg, size_t n) {
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
    if (sig == SIGKILL && oom_killed) {
        snprintf(msg, n, "killed by signal %d (%s) while the kernel recorded an out-of-memory kill: over the memory limit",
                 sig, strsignal(sig));
        return RF_FAIL_OOM;
    }
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        if (sig == faults[i]) {
            snprintf(msg, n, "crashed by signal %d (%s)", sig, strsignal(sig));
            return RF_FAIL_CRASH;
        }
    snprintf(msg, n, "killed by signal %d (%s) from outside (not the time limit; no out-of-memory kill recorded)",
             sig, strsignal(sig));
    return RF_FAIL_KILLED;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

rf_status coord_exec(rf_ctx *ctx, const char *exe, const char *dir, uint64_t mem, double time_limit, int threads,
                     volatile int *stop_flag, double deadline,
                     int (*tick)(void *ud), void *tick_ud, coord_exec_result *r) {
    memset(r, 0, sizeof *r);
    char logp[4096], resp[4096];
    snprintf(logp, sizeof logp, "%s/log.txt", dir);
    snprintf(resp, sizeof resp, "%s/result.json", dir);
    unlink(resp);
    int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) return rf_error(ctx, RF_ERR_IO, "%s: %s", logp, strerror(errno));
    char nthreads[16];   /* formatted before fork: the child only execs */
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    fflush(NULL);
    double t0 = rf_now();
    long long oom0 = oom_kills();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { close(logfd); return rf_error(ctx, RF_ERR_CHILD, "fork: %s", strerror(errno)); }
    if (pid == 0) {
        /* child: only async-signal-safe calls until exec. If the worker is
         * killed (kill -9 of a rank), its task dies with it instead of
         * running on as an orphan. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        setpgid(0, 0);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) dup2(nul, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        for (int fd = 3; fd < 1024; fd++) close(fd);
        if (mem && AS_LIMIT_WORKS) {
            struct rlimit rl = {(rlim_t)mem, (rlim_t)mem};
            setrlimit(RLIMIT_AS, &rl);
        }
        if (threads > 0) execl(exe, "raffle", "run", dir, "--threads", nthreads, (char *)NULL);
        else execl(exe, "raffle", "run", dir, (char *)NULL);
        _exit(127);
    }
    close(logfd);
    int status = 0, timed_out = 0, told = 0, cut = 0;
    double nap = 0.0005;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        /* preemption: ask the task to save its resumable state and stop
         * (`raffle run` turns SIGUSR1 into the task's stop_flag); the wall
         * clock limit below still applies if it does not */
        if (!told && ((stop_flag && *stop_flag) || (deadline > 0 && rf_now() > deadline))) {
            kill(pid, SIGUSR1);
            told = 1;
        }
        if (w < 0 && errno != EINTR) { r->cls = RF_FAIL_CRASH; snprintf(r->message, sizeof r->message, "waitpid: %s", strerror(errno)); return RF_OK; }
        if (time_limit > 0 && rf_now() - t0 > time_limit) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            timed_out = 1;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            break;
        }
        sleep_s(nap);
        if (nap < 0.02) nap *= 2;
        if (tick && tick(tick_ud)) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            cut = 1;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            break;
        }
    }
    r->seconds = rf_now() - t0;
    char tail[256];
    log_tail(dir, tail, sizeof tail);
    if (cut) {
        r->cls = RF_FAIL_KILLED;
        snprintf(r->message, sizeof r->message, "ended: this worker lost contact with rank 0");
        return RF_OK;
    }
    if (timed_out) {
        r->cls = RF_FAIL_TIMEOUT;
        snprintf(r->message, sizeof r->message, "killed after the time limit of %g s", time_limit);
        return RF_OK;
    }
    if (WIFSIGNALED(status)) {
        /* classify by what happened, not by the signal alone: a SIGKILL is
         * the memory limit only if the kernel counted an OOM kill meanwhile */
        long long oom1 = oom_kills();
        char what[200];
        r->cls = coord_signal_class(WTERMSIG(status), oom0 >= 0 && oom1 > oom0, what, sizeof what);
        snprintf(r->message, sizeof r->message, "%s%s%s", what, tail[0] ? "; last output: " : "", tail);
        return RF_OK;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    unsigned char *buf;
    size_t n;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    cJSON *res = NULL;
    if (rf_read_file(&tmp, resp, &buf, &n) == RF_OK) {
        res = cJSON_ParseWithLength((const char *)buf, n);
        rf_free(buf);
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(res, "class");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(res, "message");
    if (code == 0 && cJSON_IsString(cls) && cls->valuestring[0] == '\0') {
        r->cls = RF_FAIL_NONE;
    } else if (cJSON_IsString(cls) && cls->valuestring[0]) {
        r->cls = class_from_name(cls->valuestring);
        snprintf(r->message, sizeof r->message, "%s", cJSON_IsString(msg) ? msg->valuestring : "");
    } else {
        r->cls = RF_FAIL_ERROR;
        snprintf(r->message, sizeof r->message, "%s exited with status %d and no result%s%s",
                 code == 127 ? "exec failed:" : "task", code, tail[0] ? "; last output: " : "", tail);
    }
    cJSON_Delete(res);
    return RF_OK;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

void coord_rmtree(const char *path) {
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* /proc/PID/comm of pid into out ("" when unreadable). */
static void proc_comm(long pid, char *out, size_t n) {
    char path[64];
    out[0] = '\0';
    if (pid > 0) snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    else snprintf(path, sizeof path, "/proc/self/comm");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t k = read(fd, out, n - 1);
    close(fd);
    out[k > 0 ? k : 0] = '\0';
}

int coord_reap_children(long parent) {
    char mine[32], theirs[32];
    proc_comm(0, mine, sizeof mine);
    proc_comm(parent, theirs, sizeof theirs);
    if (parent <= 1 || parent == (long)getpid() || !mine[0] || strcmp(mine, theirs) != 0) return 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t k = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (k <= 0) continue;
        buf[k] = '\0';
        /* pid (comm) state ppid pgrp ...: comm may hold spaces and ')' */
        char *rp = strrchr(buf, ')');
        long ppid = 0, pgrp = 0;
        char st;
        if (!rp || sscanf(rp + 1, " %c %ld %ld", &st, &ppid, &pgrp) != 3 || ppid != parent) continue;
        /* a task child leads its own process group (coord_exec): the group goes */
        if (kill(pgrp == pid ? (pid_t)-pid : (pid_t)pid, SIGKILL) == 0) n++;
    }
    closedir(d);
    return n;
}
