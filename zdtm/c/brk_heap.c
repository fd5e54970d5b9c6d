/* brk_heap: the program break moved up by a random number of pages filled with a
 * pattern; after restore sbrk(0) is where it was, the data is there and brk still grows. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <stdint.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	test_init("brk_heap", argc, argv);
	long page = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)(64 + test_rand64() % 192) * page;
	uint64_t seed = test_rand64();
	char *start = sbrk(len);
	if (start == (void *)-1)
		fail("sbrk %zu: %m", len);
	char *end = sbrk(0);
	test_fill(start, len, seed);

	test_ready();
	test_waitsig();

	char *end_after = sbrk(0);
	if (end_after != end)
		fail("program break %p, was %p", (void *)end_after, (void *)end);
	long bad = test_check(start, len, seed);
	if (bad >= 0)
		fail("brk data differs at offset %ld", bad);
	char *more = sbrk(page);
	if (more != end)
		fail("sbrk after restore returned %p, expected %p", (void *)more, (void *)end);
	more[page - 1] = 1;
	pass();
}
