/* holes_guard: 32 pages with unmapped holes and PROT_NONE guard pages between patterned
 * RW runs; after restore the runs hold their pattern, the holes are still unmapped and
 * touching a guard page still faults. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 32
enum kind { RW, HOLE, GUARD };

static sigjmp_buf fault_jump;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(fault_jump, 1);
}

static int faults(volatile char *address)
{
	if (sigsetjmp(fault_jump, 1))
		return 1;
	(void)*address;
	return 0;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	enum kind layout[PAGES];
	uint64_t seed;

	test_init("holes_guard", argc, argv);
	seed = test_rand64();
	char *base = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		fail("mmap: %m");
	for (int i = 0; i < PAGES; i++) {
		layout[i] = RW;
		if (i == 4 || i == 5 || i == 16 || i == 17)
			layout[i] = HOLE;
		if (i == 6 || i == 18 || i == 31)
			layout[i] = GUARD;
	}
	for (int i = 0; i < PAGES; i++) {
		char *p = base + i * page;
		if (layout[i] == RW)
			test_fill(p, page, seed ^ (uint64_t)i);
		else if (layout[i] == HOLE && munmap(p, page))
			fail("munmap: %m");
		else if (layout[i] == GUARD && mprotect(p, page, PROT_NONE))
			fail("mprotect: %m");
	}

	test_ready();
	test_waitsig();

	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_segv;
	sigaction(SIGSEGV, &action, NULL);
	for (int i = 0; i < PAGES; i++) {
		char *p = base + i * page;
		unsigned char vec;
		int mapped = mincore(p, page, &vec) == 0 || errno != ENOMEM;
		switch (layout[i]) {
		case RW:
			if (test_check(p, page, seed ^ (uint64_t)i) >= 0)
				fail("page %d lost its pattern", i);
			break;
		case HOLE:
			if (mapped)
				fail("hole page %d is mapped after restore", i);
			break;
		case GUARD:
			if (!mapped)
				fail("guard page %d is unmapped after restore", i);
			if (!faults(p))
				fail("guard page %d is readable after restore", i);
			break;
		}
	}
	pass();
}
