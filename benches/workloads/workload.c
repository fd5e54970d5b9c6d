/* workload: the process a benchmark checkpoints.
 *
 *   workload READY_RD READY_WR RESULT_PATH KIND COUNT
 *
 * KIND COUNT: idle 0 | anon BYTES | vmas COUNT | threads COUNT | tree COUNT | fds COUNT
 *
 * It starts its own session, builds its state, writes "RESULT_PATH.ready" with a summary
 * (memory checksum, threads, live children, open fds) and closes the ready pipe: from
 * then on it holds no fd but stdio (on /dev/null) and the ones it made for the workload.
 * On SIGUSR1 its handler computes the same summary again and writes it to RESULT_PATH (through a
 * temporary file and rename, so the reader never sees half a line). A restore that lost a
 * page, a thread, a child or an fd gives another summary than the ready one.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *result_path;
static uint64_t *memory_words;
static size_t memory_word_count;
static long vma_pages, page_size;
static unsigned char *vma_base;
static pid_t *children;
static long child_count;
static int first_fd;
static long fd_count;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint64_t word_for(uint64_t index) {
    uint64_t x = (index + 0x1234567ULL) * 0x9E3779B97F4A7C15ULL;
    return x ^ (x >> 29) ^ index;
}

static uint64_t checksum_words(const uint64_t *words, size_t count) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += words[i] * (i | 1);
    return sum;
}

static uint64_t checksum(void) {
    uint64_t sum = checksum_words(memory_words, memory_word_count);
    /* vmas: every even page holds data, every odd one is a read-only separator */
    for (long p = 0; p < vma_pages; p += 2)
        sum += checksum_words((uint64_t *)(vma_base + p * page_size), page_size / 8) * (p + 1);
    return sum;
}

/* async-signal-safe: opendir/readdir are not */
static long count_threads(void) {
    char buffer[4096];
    long count = 0;
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buffer, sizeof(buffer));
        if (n <= 0)
            break;
        for (long offset = 0; offset < n;) {
            struct dirent64 *entry = (struct dirent64 *)(buffer + offset);
            if (entry->d_name[0] != '.')
                count++;
            offset += entry->d_reclen;
        }
    }
    close(fd);
    return count;
}

static long count_children(void) {
    long alive = 0;
    for (long i = 0; i < child_count; i++)
        if (kill(children[i], 0) == 0)
            alive++;
    return alive;
}

static long count_fds(void) {
    long open_count = 0;
    for (long i = 0; i < fd_count; i++)
        if (fcntl(first_fd + i, F_GETFD) != -1)
            open_count++;
    return open_count;
}

static char *put_text(char *out, const char *text) {
    while (*text)
        *out++ = *text++;
    return out;
}

static char *put_number(char *out, unsigned long long value, unsigned base, int min_digits) {
    char digits[32];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[value % base];
        value /= base;
    } while (value || n < min_digits);
    while (n)
        *out++ = digits[--n];
    return out;
}

/* "sum=%016llx threads=%ld children=%ld fds=%ld\n", written with async-signal-safe calls
 * only: it runs in the SIGUSR1 handler, so no signal can slip between a check and a
 * pause() and be lost */
static void write_summary(const char *path) {
    char tmp[4096], line[256], *out = line;
    size_t path_len = strlen(path);
    if (path_len + 5 > sizeof(tmp))
        _exit(3);
    memcpy(tmp, path, path_len);
    memcpy(tmp + path_len, ".tmp", 5);
    out = put_text(out, "sum=");
    out = put_number(out, checksum(), 16, 16);
    out = put_text(out, " threads=");
    out = put_number(out, count_threads(), 10, 1);
    out = put_text(out, " children=");
    out = put_number(out, count_children(), 10, 1);
    out = put_text(out, " fds=");
    out = put_number(out, count_fds(), 10, 1);
    out = put_text(out, "\n");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        _exit(4);
    if (write(fd, line, out - line) != out - line)
        _exit(5);
    close(fd);
    if (rename(tmp, path))
        _exit(6);
}

static void on_usr1(int sig) {
    (void)sig;
    write_summary(result_path);
}

static void *idle_thread(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void fill(uint64_t *words, size_t count, uint64_t seed) {
    for (size_t i = 0; i < count; i++)
        words[i] = word_for(i + seed);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: workload READY_RD READY_WR RESULT_PATH KIND COUNT\n");
        return 2;
    }
    int ready_rd = atoi(argv[1]), ready_wr = atoi(argv[2]);
    result_path = argv[3];
    const char *kind = argv[4];
    long long count = atoll(argv[5]);
    page_size = sysconf(_SC_PAGESIZE);
    close(ready_rd);
    /* hold nothing the harness's own parent left open (a jobserver pipe, say) */
    if (ready_wr < 3)
        die("ready pipe below fd 3");
    syscall(SYS_close_range, 3, ready_wr - 1, 0);
    syscall(SYS_close_range, ready_wr + 1, ~0U, 0);
    if (setsid() < 0)
        die("setsid");

    struct sigaction action = {0};
    action.sa_handler = on_usr1;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGUSR1, &action, NULL))
        die("sigaction");

    /* a little data in every workload */
    static uint64_t small[512];
    memory_words = small;
    memory_word_count = 512;
    fill(small, 512, 7);

    if (!strcmp(kind, "idle")) {
    } else if (!strcmp(kind, "anon")) {
        memory_word_count = (size_t)count / 8;
        memory_words = mmap(NULL, (size_t)count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory_words == MAP_FAILED)
            die("mmap anon");
        fill(memory_words, memory_word_count, 0);
    } else if (!strcmp(kind, "vmas")) {
        vma_pages = count;
        vma_base = mmap(NULL, vma_pages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (vma_base == MAP_FAILED)
            die("mmap vmas");
        for (long p = 0; p < vma_pages; p += 2)
            fill((uint64_t *)(vma_base + p * page_size), page_size / 8, (uint64_t)p << 20);
        for (long p = 1; p < vma_pages; p += 2)
            if (mprotect(vma_base + p * page_size, page_size, PROT_READ))
                die("mprotect");
    } else if (!strcmp(kind, "threads")) {
        sigset_t usr1, old;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, &old); /* only the main thread takes SIGUSR1 */
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        for (long i = 1; i < count; i++) {
            pthread_t thread;
            if (pthread_create(&thread, &attr, idle_thread, NULL))
                die("pthread_create");
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    } else if (!strcmp(kind, "tree")) {
        child_count = count - 1;
        children = calloc(child_count + 1, sizeof(pid_t));
        for (long i = 0; i < child_count; i++) {
            pid_t pid = fork();
            if (pid < 0)
                die("fork");
            if (pid == 0) {
                close(ready_wr);
                for (;;)
                    pause();
            }
            children[i] = pid;
        }
    } else if (!strcmp(kind, "fds")) {
        struct rlimit limit = {count + 1024, count + 1024};
        if (setrlimit(RLIMIT_NOFILE, &limit))
            die("setrlimit");
        first_fd = 100; /* above the ready pipe, wherever the harness had it */
        if (ready_wr >= first_fd)
            die("ready pipe above fd 100");
        fd_count = count;
        for (long i = 0; i < count; i++) {
            int fd = open("/dev/null", O_RDONLY);
            if (fd < 0)
                die("open /dev/null");
            if (dup2(fd, first_fd + i) < 0)
                die("dup2");
            if (fd != first_fd + i)
                close(fd);
        }
    } else {
        fprintf(stderr, "unknown workload kind %s\n", kind);
        return 2;
    }

    char ready_path[4096];
    snprintf(ready_path, sizeof(ready_path), "%s.ready", result_path);
    write_summary(ready_path);
    close(ready_wr);

    for (;;)
        pause();
}
