/*
 * nb_maint: the worker processes that may still use node entries (the
 * node reclaim of SPEC section 3's node table across reloads).
 *
 * Every worker holds a slot (pid, /proc start time, generation) in the
 * zone while it runs; at each commit the master notes its live children.
 * From both the master knows which generations may still run, so that a
 * node entry no live generation uses can be given to a new one.
 *
 * May call: state.c (the zone, the generation).
 */

#include "ngx_http_nb_maint.h"


static ngx_http_nb_maint_worker_t  *ngx_http_nb_maint_slot;


static ngx_uint_t ngx_http_nb_maint_forked_before_commit(
    ngx_http_nb_maint_shm_t *sh, ngx_pid_t pid);


ngx_uint_t
ngx_http_nb_maint_worker_alive(ngx_http_nb_maint_worker_t *w)
{
    ngx_pid_t  pid;
    uint64_t   start;

    pid = (ngx_pid_t) w->pid;

    if (pid == 0) {
        return 0;
    }

    start = ngx_http_nb_maint_proc_start(pid);

    return start != 0 && (start == 1 || w->start <= 1 || start == w->start);
}


/*
 * Every worker holds a slot (pid, start time, generation) while it runs,
 * so that the master knows which generations may still use node entries.
 * A killed worker's slot is recognized by its pid being gone or reused.
 */

ngx_int_t
ngx_http_nb_maint_worker_register(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_atomic_uint_t            pid;
    ngx_http_nb_maint_shm_t     *sh;
    ngx_http_nb_maint_worker_t  *w;

    sh = ngx_http_nb_maint_shm();

    for (i = 0; i < NB_WORKER_SLOTS; i++) {
        w = &sh->workers[i];
        pid = w->pid;

        if (pid != 0 && ngx_http_nb_maint_worker_alive(w)) {
            continue;
        }

        if (!ngx_atomic_cmp_set(&w->pid, pid, (ngx_atomic_uint_t) ngx_pid)) {
            continue;
        }

        /* the master trusts gen only once start matches: gen first */
        w->start = 0;
        w->gen = ngx_http_nb_maint_generation();
        ngx_memory_barrier();
        w->start = ngx_http_nb_maint_proc_start(ngx_pid);
        ngx_http_nb_maint_slot = w;

        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "nb_maint: more than %d workers, node entries of old "
                  "configurations are kept", NB_WORKER_SLOTS);

    return NGX_OK;
}


void
ngx_http_nb_maint_worker_unregister(void)
{
    ngx_http_nb_maint_worker_t  *w;

    w = ngx_http_nb_maint_slot;

    if (w) {
        (void) ngx_atomic_cmp_set(&w->pid, (ngx_atomic_uint_t) ngx_pid, 0);
        ngx_http_nb_maint_slot = NULL;
    }
}


/*
 * The master's live worker children at the commit of a generation (master
 * only, no fork runs meanwhile).  Workers are forked from the committed
 * cycle only, so a child not in this list belongs to that generation.
 */

void
ngx_http_nb_maint_commit_pids(ngx_http_nb_maint_shm_t *sh)
{
    ngx_int_t   p;
    ngx_uint_t  n;

    n = 0;

    for (p = 0; p < ngx_last_process && n < NB_WORKER_SLOTS; p++) {
        if (ngx_processes[p].pid == -1 || ngx_processes[p].pid == 0
            || ngx_processes[p].exited)
        {
            continue;
        }

        sh->commit_pids[n++] = ngx_processes[p].pid;
    }

    sh->ncommit_pids = n;
}


static ngx_uint_t
ngx_http_nb_maint_forked_before_commit(ngx_http_nb_maint_shm_t *sh,
    ngx_pid_t pid)
{
    ngx_uint_t  i;

    for (i = 0; i < sh->ncommit_pids; i++) {
        if (sh->commit_pids[i] == pid) {
            return 1;
        }
    }

    return 0;
}


/*
 * The generations whose workers may still run, seen from the master: each
 * live worker child with its slot's generation, and "newest", the one
 * being loaded.  A child without a slot yet that was forked after the last
 * commit runs the committed generation; one forked before it, without a
 * slot, could run any generation: NGX_ERROR, nothing is freed.
 */

ngx_int_t
ngx_http_nb_maint_live_gens(ngx_http_nb_maint_shm_t *sh, ngx_uint_t newest,
    ngx_uint_t *gens, ngx_uint_t max)
{
    uint64_t                     start;
    ngx_int_t                    p;
    ngx_uint_t                   i, k, n, gen;
    ngx_http_nb_maint_worker_t  *w;

    gens[0] = newest;
    n = 1;

    for (p = 0; p < ngx_last_process; p++) {

        if (ngx_processes[p].pid == -1 || ngx_processes[p].pid == 0
            || ngx_processes[p].exited
            || ngx_processes[p].name == NULL
            || ngx_strcmp(ngx_processes[p].name, "worker process") != 0)
        {
            continue;
        }

        start = ngx_http_nb_maint_proc_start(ngx_processes[p].pid);
        if (start == 0) {
            continue;
        }

        gen = 0;

        for (i = 0; i < NB_WORKER_SLOTS; i++) {
            w = &sh->workers[i];

            if ((ngx_pid_t) w->pid == ngx_processes[p].pid
                && (w->start == start || start == 1))
            {
                ngx_memory_barrier();
                gen = w->gen;
                break;
            }
        }

        if (gen == 0) {
            if (ngx_http_nb_maint_forked_before_commit(sh,
                                                       ngx_processes[p].pid))
            {
                return NGX_ERROR;
            }

            gen = sh->generation;
        }

        for (k = 0; k < n && gens[k] != gen; k++) { /* void */ }

        if (k == n) {
            if (n == max) {
                return NGX_ERROR;
            }

            gens[n++] = gen;
        }
    }

    return n;
}
