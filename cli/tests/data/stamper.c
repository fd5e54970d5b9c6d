/* A process whose threads keep stamping generations into their memory, to prove that a
 * dump is a snapshot of one instant. argv: OUT MIB THREADS [churn].
 *
 * Each of THREADS threads owns MIB/THREADS MiB of private anonymous memory and, for
 * generation g = 1, 2, ..., visits its pages in order: a page must hold generation g-1
 * (word 0) with its check word (word 1), and gets generation g. Memory that is a single
 * instant's, together with the registers and stacks of that same instant, passes this
 * check forever; a page copied earlier or later than the rest (an older or newer
 * generation than the thread's position says) fails it at the next visit.
 *
 * The process writes its pid on fd 3 and closes it once every page holds generation 0
 * and the threads run. On SIGUSR1 every thread finishes the generation after the
 * current one (so each page is checked at least once after the signal), and the process
 * writes "PASS" or "FAIL ..." to OUT and exits 0 or 1.
 *
 * With "churn", one more thread keeps dropping (madvise MADV_DONTNEED) and refilling a
 * 4 MiB area mapped before the others, whose content is not checked: a snapshot has to
 * notice pages it did not copy yet going away. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_THREADS 16
#define WORDS_PER_PAGE 512

struct region {
    pthread_t thread;
    uint64_t *mem;
    size_t pages;
    uint64_t seed;
    _Atomic uint64_t done_gen;  /* last generation finished */
    _Atomic uint64_t stop_gen;  /* finish this generation, then stop (0: go on) */
    uint64_t bad;
    uint64_t first_bad_page, first_bad_gen, first_bad_found;
};

static struct region regions[MAX_THREADS];
static _Atomic int churn_stop;

static void *churn(void *arg) {
    char *area = arg;
    while (!atomic_load(&churn_stop)) {
        madvise(area, 4 << 20, MADV_DONTNEED);
        for (size_t off = 0; off < (4 << 20); off += 4096)
            area[off] = 1;
    }
    return NULL;
}

static uint64_t check_word(const struct region *r, uint64_t gen, size_t page) {
    return r->seed ^ (gen * 0x9E3779B97F4A7C15ull) ^ (page * 0x2545F4914F6CDD1Dull);
}

static void *stamp(void *arg) {
    struct region *r = arg;
    for (uint64_t gen = 1;; gen++) {
        for (size_t page = 0; page < r->pages; page++) {
            volatile uint64_t *p = r->mem + page * WORDS_PER_PAGE;
            if (p[0] != gen - 1 || p[1] != check_word(r, gen - 1, page)) {
                if (r->bad++ == 0) {
                    r->first_bad_page = page;
                    r->first_bad_gen = gen;
                    r->first_bad_found = p[0];
                }
            }
            p[0] = gen;
            p[1] = check_word(r, gen, page);
        }
        atomic_store(&r->done_gen, gen);
        uint64_t stop = atomic_load(&r->stop_gen);
        if (stop && gen >= stop)
            return NULL;
    }
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5)
        return 2;
    size_t mib = (size_t)atol(argv[2]);
    int threads = atoi(argv[3]);
    if (threads < 1 || threads > MAX_THREADS)
        return 2;
    setsid();
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL); /* the threads inherit it; main sigwaits */
    char *churn_area = NULL;
    if (argc == 5) {
        churn_area = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (churn_area == MAP_FAILED)
            return 3;
        for (size_t off = 0; off < (4 << 20); off += 4096)
            churn_area[off] = 1;
    }
    size_t region_bytes = (mib << 20) / (size_t)threads;
    for (int t = 0; t < threads; t++) {
        struct region *r = &regions[t];
        r->mem = mmap(NULL, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r->mem == MAP_FAILED)
            return 3;
        r->pages = region_bytes / 4096;
        r->seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)r->mem;
        for (size_t page = 0; page < r->pages; page++) {
            r->mem[page * WORDS_PER_PAGE] = 0;
            r->mem[page * WORDS_PER_PAGE + 1] = check_word(r, 0, page);
            for (size_t w = 2; w < WORDS_PER_PAGE; w++)
                r->mem[page * WORDS_PER_PAGE + w] = r->seed + page * WORDS_PER_PAGE + w;
        }
    }
    for (int t = 0; t < threads; t++)
        pthread_create(&regions[t].thread, NULL, stamp, &regions[t]);
    pthread_t churner;
    if (churn_area)
        pthread_create(&churner, NULL, churn, churn_area);
    dprintf(3, "%d\n", getpid());
    close(3);
    int sig;
    sigwait(&usr1, &sig);
    for (int t = 0; t < threads; t++)
        atomic_store(&regions[t].stop_gen, atomic_load(&regions[t].done_gen) + 2);
    if (churn_area) {
        atomic_store(&churn_stop, 1);
        pthread_join(churner, NULL);
    }
    uint64_t bad = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(regions[t].thread, NULL);
        struct region *r = &regions[t];
        bad += r->bad;
        /* The rest of each page never changes. */
        for (size_t page = 0; page < r->pages; page++)
            for (size_t w = 2; w < WORDS_PER_PAGE; w++)
                bad += r->mem[page * WORDS_PER_PAGE + w] != r->seed + page * WORDS_PER_PAGE + w;
    }
    FILE *out = fopen(argv[1], "w");
    if (!bad) {
        fprintf(out, "PASS\n");
    } else {
        for (int t = 0; t < threads; t++)
            if (regions[t].bad)
                fprintf(out, "FAIL thread %d: %llu bad pages, first page %llu in generation %llu held %llu\n", t,
                        (unsigned long long)regions[t].bad, (unsigned long long)regions[t].first_bad_page,
                        (unsigned long long)regions[t].first_bad_gen, (unsigned long long)regions[t].first_bad_found);
        fprintf(out, "FAIL %llu\n", (unsigned long long)bad);
    }
    fclose(out);
    return bad != 0;
}
