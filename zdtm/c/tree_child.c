/* tree_child: the test with one child; both keep random memory, their pids and the
 * parent link. */
#include "tree_util.h"
#include <stdlib.h>

static uint64_t seed;
static char *heap;
enum { HEAP = 1 << 20 };

static int child(void *arg)
{
	pid_t parent = getppid(), self = getpid();
	uint64_t own = test_rand64();
	char *mine = malloc(HEAP);
	test_fill(mine, HEAP, own);
	child_ready();
	test_waitsig();
	if (getpid() != self || raw_gettid() != self)
		CHILD_FAIL("pid %d, was %d", getpid(), self);
	if (getppid() != parent)
		CHILD_FAIL("parent %d, was %d", getppid(), parent);
	if (test_check(heap, HEAP, seed) != -1)
		CHILD_FAIL("inherited heap changed");
	if (test_check(mine, HEAP, own) != -1)
		CHILD_FAIL("own heap changed");
	return 0;
}

int main(int argc, char **argv)
{
	test_init("tree_child", argc, argv);
	seed = test_rand64();
	heap = malloc(HEAP);
	test_fill(heap, HEAP, seed);
	pid_t pid = fork_child(child, NULL);
	test_ready();
	test_waitsig();
	/* The parent's copy changes; the child's copy must not. */
	test_fill(heap, HEAP, seed ^ 1);
	if (reap_ok(pid))
		fail("child %d failed (see log)", pid);
	pass();
}
