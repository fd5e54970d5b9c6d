/* stack_growsdown: deep recursion, each frame holding a patterned buffer, so the stack
 * grows down well past its first pages; the dump happens at the deepest frame and every
 * frame checks its buffer on the way back up. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DEPTH 600
#define FRAME_BYTES 2048

static uint64_t seed;
static uintptr_t deepest;

static int descend(int depth)
{
	uint64_t buffer[FRAME_BYTES / 8];
	test_fill(buffer, sizeof(buffer), seed ^ (uint64_t)depth);
	int bad = 0;
	if (depth == DEPTH) {
		deepest = (uintptr_t)buffer;
		test_ready();
		test_waitsig();
	} else {
		bad = descend(depth + 1);
	}
	if (test_check(buffer, sizeof(buffer), seed ^ (uint64_t)depth) >= 0)
		bad = depth;
	__asm__ volatile("" ::"r"(buffer) : "memory");
	return bad;
}

int main(int argc, char **argv)
{
	test_init("stack_growsdown", argc, argv);
	seed = test_rand64();
	int bad = descend(1);
	if (bad)
		fail("stack frame %d lost its data", bad);
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	int in_stack = 0;
	while (maps && fgets(line, sizeof(line), maps)) {
		unsigned long start, end;
		if (strstr(line, "[stack]") && sscanf(line, "%lx-%lx", &start, &end) == 2)
			in_stack = deepest >= start && deepest < end;
	}
	if (!in_stack)
		fail("deepest frame %#lx is not inside [stack]", (unsigned long)deepest);
	pass();
}
