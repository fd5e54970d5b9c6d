/* devzero_shared: a MAP_SHARED mapping of /dev/zero is shared memory (shmem), like a
 * MAP_SHARED|MAP_ANONYMOUS one: the test and its child, forked after the mapping, each
 * write a pattern into their half before the dump. After restore both halves hold their
 * patterns, and what the child writes after restore is what the test reads: one object
 * still. A second /dev/zero mapping, private, stays private (the child's writes to it are
 * its own). */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/mman.h>

#define SIZE (64 * 4096)

static uint64_t *shared, *private_area;
static uint64_t seed_parent, seed_child;
static int go[2], done[2];

static int child(void *arg)
{
	(void)arg;
	test_fill((char *)shared + SIZE / 2, SIZE / 2, seed_child);
	test_fill(private_area, SIZE, seed_child);
	child_ready();
	char byte;
	if (read(go[0], &byte, 1) != 1)
		CHILD_FAIL("read go: %m");
	if (test_check((char *)shared + SIZE / 2, SIZE / 2, seed_child) != -1)
		CHILD_FAIL("own half of the shared mapping changed");
	/* Written after restore: the test must see it. */
	shared[0] = 0x5eed5eed;
	test_fill(private_area, SIZE, seed_parent);
	if (write(done[1], "d", 1) != 1)
		CHILD_FAIL("write done: %m");
	test_waitsig();
	return 0;
}

int main(int argc, char **argv)
{
	test_init("devzero_shared", argc, argv);
	int zero = open("/dev/zero", O_RDWR);
	if (zero < 0)
		fail("open /dev/zero: %m");
	shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, zero, 0);
	private_area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, zero, 0);
	if (shared == MAP_FAILED || private_area == MAP_FAILED)
		fail("mmap /dev/zero: %m");
	close(zero);
	seed_parent = test_rand64();
	seed_child = test_rand64();
	if (pipe(go) || pipe(done))
		fail("pipe: %m");
	test_fill(shared, SIZE / 2, seed_parent);
	pid_t kid = fork_child(child, NULL);
	test_fill(private_area, SIZE, seed_parent ^ 1);
	test_ready();
	test_waitsig();

	if (test_check(shared, SIZE / 2, seed_parent) != -1)
		fail("the test's half of the shared mapping changed");
	if (test_check((char *)shared + SIZE / 2, SIZE / 2, seed_child) != -1)
		fail("the child's half of the shared mapping is not what the child wrote");
	if (write(go[1], "g", 1) != 1)
		fail("write go: %m");
	char byte;
	if (read(done[0], &byte, 1) != 1)
		fail("read done: %m");
	if (shared[0] != 0x5eed5eed)
		fail("the child's write after restore is not in the test's mapping: not one object");
	if (test_check(private_area, SIZE, seed_parent ^ 1) != -1)
		fail("the private /dev/zero mapping changed (the child's writes reached it?)");
	if (reap_ok(kid))
		fail("child failed");
	pass();
}
