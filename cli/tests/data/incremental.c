/* incremental: 32 MiB of pages, each stamped with generation 0 and its index. Writes its
 * pid to fd 3 and closes it. On SIGUSR2 it restamps every other page with generation 1,
 * writes one byte to fd 4 and closes it. On SIGUSR1 it checks every page (the odd ones
 * at generation 1 if SIGUSR2 came, else 0) and writes PASS or FAIL to argv[1]. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE (32 << 20)
#define PAGE 4096

static volatile sig_atomic_t check, modify;
static void on_usr1(int sig) { (void)sig; check = 1; }
static void on_usr2(int sig) { (void)sig; modify = 1; }

static void stamp(uint64_t *page, uint64_t index, uint64_t gen)
{
	for (int i = 0; i < PAGE / 8; i++)
		page[i] = (index << 32) ^ (gen << 24) ^ (uint64_t)i ^ 0x5a5a5a5a00000000ULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	setsid();
	char *area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return 3;
	for (uint64_t p = 0; p < SIZE / PAGE; p++)
		stamp((uint64_t *)(area + p * PAGE), p, 0);
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	dprintf(3, "%d\n", getpid());
	close(3);
	int modified = 0;
	while (!check) {
		if (modify && !modified) {
			for (uint64_t p = 1; p < SIZE / PAGE; p += 2)
				stamp((uint64_t *)(area + p * PAGE), p, 1);
			modified = 1;
			if (write(4, "m", 1) != 1)
				return 4;
			close(4);
			continue;
		}
		pause();
	}
	int ok = 1;
	uint64_t want[PAGE / 8];
	for (uint64_t p = 0; p < SIZE / PAGE && ok; p++) {
		stamp(want, p, modified && (p & 1));
		for (int i = 0; i < PAGE / 8; i++)
			if (((uint64_t *)(area + p * PAGE))[i] != want[i])
				ok = 0;
	}
	FILE *out = fopen(argv[1], "w");
	fputs(ok ? "PASS\n" : "FAIL\n", out);
	fclose(out);
	return ok ? 0 : 1;
}
