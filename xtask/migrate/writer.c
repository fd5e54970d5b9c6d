/* writer: the process `cargo xtest migrate` moves.
 *
 *   writer BYTES RATE RESULT_PATH
 *
 * Maps BYTES of private anonymous memory and stamps every page with generation 0, writes
 * RESULT_PATH.ready, then rewrites pages in address order, round and round, at RATE
 * bytes per second: page P of generation G holds P and G in its first two words and a
 * function of (P, G, word) in the others. `written` (pages rewritten since the fill)
 * says which generation each page must hold: with G = written / pages and C = written %
 * pages, pages below C hold G + 1 and the others G. On SIGUSR1 it checks every word of
 * every page against that, writes "PASS WRITTEN" or "FAIL ..." to RESULT_PATH (a
 * temporary file renamed) and exits: a page lost, torn, or older than the last write
 * (a stale copy from a pre-dump) fails.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static volatile sig_atomic_t check;
static void on_usr1(int sig) { (void)sig; check = 1; }

static uint64_t word(uint64_t page, uint64_t gen, uint64_t i)
{
	uint64_t x = (page * 0x9E3779B97F4A7C15ULL) ^ (gen << 40) ^ (i * 0xBF58476D1CE4E5B9ULL);
	return x ^ (x >> 31);
}

static void stamp(uint64_t *p, uint64_t page, uint64_t gen)
{
	p[0] = page;
	p[1] = gen;
	for (uint64_t i = 2; i < WORDS; i++)
		p[i] = word(page, gen, i);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void result(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		exit(3);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	uint64_t bytes = strtoull(argv[1], NULL, 0), rate = strtoull(argv[2], NULL, 0);
	const char *path = argv[3];
	uint64_t pages = bytes / PAGE;
	/* A session of its own: the pid namespace holds its whole tree. */
	setsid();
	signal(SIGUSR1, on_usr1);
	uint64_t *area = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return 4;
	for (uint64_t p = 0; p < pages; p++)
		stamp(area + p * WORDS, p, 0);
	char ready[4096];
	snprintf(ready, sizeof ready, "%s.ready", path);
	result(ready, "ready\n");
	/* The pace is kept on the monotonic clock, from what was written against the time
	 * that ran (frozen time included: after a freeze it catches up, at most 1/4 s). */
	static volatile uint64_t written;
	double start = now();
	while (!check) {
		double due = (now() - start) * (double)rate / PAGE, lag = (double)rate / 4 / PAGE;
		if (due - (double)written > lag) {
			start += (due - (double)written - lag) * PAGE / rate;
			due = (double)written + lag;
		}
		while ((double)written < due && !check) {
			uint64_t p = written % pages, gen = written / pages + 1;
			stamp(area + p * WORDS, p, gen);
			written = written + 1;
		}
		usleep(1000);
	}
	uint64_t g = written / pages, c = written % pages;
	for (uint64_t p = 0; p < pages; p++) {
		uint64_t gen = p < c ? g + 1 : g;
		uint64_t *w = area + p * WORDS;
		int bad = w[0] != p || w[1] != gen;
		for (uint64_t i = 2; !bad && i < WORDS; i++)
			bad = w[i] != word(p, gen, i);
		if (bad) {
			char text[256];
			snprintf(text, sizeof text, "FAIL page %lu: holds page %lu generation %lu, expected generation %lu (written %lu)\n",
				 (unsigned long)p, (unsigned long)w[0], (unsigned long)w[1], (unsigned long)gen, (unsigned long)written);
			result(path, text);
			return 1;
		}
	}
	char text[64];
	snprintf(text, sizeof text, "PASS %lu\n", (unsigned long)written);
	result(path, text);
	return 0;
}
