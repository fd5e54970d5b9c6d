/* tree_shapes: `tree_shapes wide N` (N children), `deep N` (a chain N deep), `mixed`
 * (children with grandchildren): every process keeps its pid, parent and a random value
 * in its memory, and forwards the check to its own children. */
#include "tree_util.h"
#include <stdlib.h>

static int depth_left, fanout, levels_fanout;

static int node(void *arg)
{
	int depth = (int)(intptr_t)arg;
	pid_t self = getpid(), parent = getppid();
	uint64_t value = test_rand64();
	volatile uint64_t kept = value;
	pid_t kids[64];
	int nkids = 0;
	int want = depth <= 0 ? 0 : (levels_fanout ? fanout : 1);
	for (int i = 0; i < want; i++)
		kids[nkids++] = fork_child(node, (void *)(intptr_t)(depth - 1));
	child_ready();
	test_waitsig();
	int bad = 0;
	for (int i = 0; i < nkids; i++)
		bad |= reap_ok(kids[i]) != 0;
	if (getpid() != self || getppid() != parent)
		CHILD_FAIL("pid/ppid %d/%d, were %d/%d", getpid(), getppid(), self, parent);
	if (kept != value)
		CHILD_FAIL("value changed");
	return bad;
}

int main(int argc, char **argv)
{
	test_init("tree_shapes", argc, argv);
	const char *shape = argc > 1 ? argv[1] : "wide";
	int n = argc > 2 ? atoi(argv[2]) : 8;
	pid_t kids[64];
	int nkids = 0;
	if (!strcmp(shape, "wide")) {
		for (int i = 0; i < n && i < 64; i++)
			kids[nkids++] = fork_child(node, (void *)0);
	} else if (!strcmp(shape, "deep")) {
		kids[nkids++] = fork_child(node, (void *)(intptr_t)(n - 1));
	} else { /* mixed: n children, each with n grandchildren */
		levels_fanout = 1;
		fanout = n;
		for (int i = 0; i < n; i++)
			kids[nkids++] = fork_child(node, (void *)(intptr_t)1);
	}
	(void)depth_left;
	test_ready();
	test_waitsig();
	for (int i = 0; i < nkids; i++)
		if (reap_ok(kids[i]))
			fail("subtree of %d failed (see log)", kids[i]);
	pass();
}
