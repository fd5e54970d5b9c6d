/* A process that fills anonymous memory with a pattern derived from its pid and an
 * address (so no other run can produce the same bytes), tells the test it is ready by
 * writing its pid on fd 3 and closing it, then sleeps until SIGUSR1, checks every byte,
 * writes PASS or FAIL to argv[1] and exits 0 or 1. SIGUSR1 is blocked but inside
 * sigsuspend(), so a SIGUSR1 that comes before the sleep waits for it (with
 * `while (!check) pause();` one handled between the test and the pause was lost). */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t check;
static void on_usr1(int sig) { (void)sig; check = 1; }

int main(int argc, char **argv) {
    size_t size = (size_t)atol(argv[2]) << 20;
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null);
    for (int fd = 4; fd < 1024; fd++) close(fd);
    uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)mem;
    for (size_t i = 0; i < size / 8; i++) mem[i] = seed ^ (i * 0x2545F4914F6CDD1Dull);
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, during;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &during);
    sigdelset(&during, SIGUSR1);
    dprintf(3, "%d\n", getpid());
    close(3);
    while (!check) sigsuspend(&during);
    size_t bad = 0;
    for (size_t i = 0; i < size / 8; i++) bad += mem[i] != (seed ^ (i * 0x2545F4914F6CDD1Dull));
    FILE *out = fopen(argv[1], "w");
    fprintf(out, bad ? "FAIL %zu words differ\n" : "PASS\n", bad);
    fclose(out);
    return bad != 0;
}
