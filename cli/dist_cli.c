/* dist_cli.c — --tp / --pp (docs/distributed.md): starting MPI for a command and what changes on ranks
 * other than 0, which run the same command on the same input but print nothing on stdout. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static kiln_dist *started; /* ended at exit, so every way out (cli_fail included) finalises MPI */

static void end_dist(void) {
    kiln_err err;
    if (kiln_dist_lead_end(started, &err)) fprintf(stderr, "kiln: %s\n", err.msg); /* a leader's followers stop */
    kiln_dist_free(started);
    started = NULL;
}

void cli_dist_start(const cli_dist *cd, kiln_model_opts *mo) {
    /* a usage error every rank finds alike, before MPI starts */
    if (cd->micro > 1 && cd->pp == 1) cli_fail(2, "--micro-batches %d: needs --pp > 1 (they overlap pipeline stages)", cd->micro);
    if (cd->tp * cd->pp == 1) return;
    kiln_err err;
    if (!(started = kiln_dist_init(cd->tp, cd->pp, &err))) cli_fail(2, "%s", err.msg);
    atexit(end_dist);
    mo->dist = started;
    if (kiln_dist_rank(started) != 0) {
        mo->quiet = true; /* one progress bar, rank 0's */
        if (!freopen("/dev/null", "w", stdout)) cli_fail(1, "cannot silence stdout on rank %d", kiln_dist_rank(started));
    }
}

void cli_dist_follow(kiln_model *m) {
    if (!started || kiln_dist_rank(started) == 0) return;
    /* only rank 0 ends the run (a server's SIGTERM drain): a follower that a signal took down would leave
     * rank 0 waiting in the next step's exchanges */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    kiln_err err;
    if (kiln_dist_follow(m, &err)) cli_fail(1, "rank %d: %s", kiln_dist_rank(started), err.msg);
    kiln_model_free(m);
    exit(0);
}

/* Off unless asked: on one 2-core machine two micro-batches halved the decode rate (docs/distributed.md),
 * since each re-reads the stage's weights and the stages share the cores anyway. */
int cli_dist_micro(const cli_dist *cd) { return cd->micro ? cd->micro : 1; }

void cli_dist_lead(const cli_dist *cd) {
    if (!started || kiln_dist_rank(started) != 0) return;
    kiln_err err;
    if (kiln_dist_lead(started, cli_dist_micro(cd), &err)) cli_fail(2, "%s", err.msg);
}

bool cli_dist_rank0(void) { return kiln_dist_rank(started) == 0; }

const char *cli_dist_stats(void) {
    static char s[96];
    if (!started) return "";
    snprintf(s, sizeof s, ",\"rank\":%d,\"ranks\":%d,\"mpi_s\":%.6f", kiln_dist_rank(started), kiln_dist_size(started),
             kiln_dist_comm_seconds(started));
    return s;
}

void cli_dist_report(int steps) {
    if (!started || kiln_dist_rank(started) != 0) return;
    double s = kiln_dist_comm_seconds(started);
    fprintf(stderr, "[MPI: %d ranks, rank 0 spent %.1f ms in MPI calls, %.3f ms per step over %d steps]\n",
            kiln_dist_size(started), s * 1e3, steps > 0 ? s * 1e3 / steps : 0.0, steps);
}
