/* static_bin: a -static program (no ld.so, no libc.so mappings): memory pattern, brk
 * data and a counter, restored without any shared object behind them. `static_bin
 * tiny` keeps its memory small (16 KiB mapped, 4 KiB of heap): the s390x dump kept as a
 * fixture in images/tests/fixtures/s390x-dump is of that one. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t data_pattern[4096];

int main(int argc, char **argv)
{
	test_init("static_bin", argc, argv);
	uint64_t seed = test_rand64();
	int tiny = argc > 1 && !strcmp(argv[argc - 1], "tiny");
	size_t len = tiny ? 16 << 10 : 8 << 20;
	size_t heap_len = tiny ? 4 << 10 : 1 << 16;
	char *anon = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		fail("mmap: %m");
	test_fill(anon, len, seed);
	test_fill(data_pattern, sizeof(data_pattern), ~seed);
	char *heap = malloc(heap_len);
	test_fill(heap, heap_len, seed + 1);
	pid_t pid = getpid();

	test_ready();
	test_waitsig();

	if (getpid() != pid)
		fail("pid %d, was %d", getpid(), pid);
	if (test_check(anon, len, seed) >= 0 || test_check(data_pattern, sizeof(data_pattern), ~seed) >= 0 ||
	    test_check(heap, heap_len, seed + 1) >= 0)
		fail("memory changed");
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	while (maps && fgets(line, sizeof(line), maps))
		if (strstr(line, "ld-linux") || strstr(line, "libc.so"))
			fail("a static program has a shared object mapped: %s", line);
	pass();
}
