/* membarrier: the process registers for private expedited membarriers and, at random,
 * for global expedited, sync-core and rseq ones (Linux 6.3+ tells them back through
 * MEMBARRIER_CMD_GET_REGISTRATIONS). After restore the registrations are the same and a
 * private expedited barrier works (it fails with EPERM in a process not registered). */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

int main(int argc, char **argv)
{
	test_init("membarrier", argc, argv);
	long supported = membarrier(MEMBARRIER_CMD_QUERY);
	if (supported < 0 || membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS) < 0)
		test_skip("membarrier without MEMBARRIER_CMD_GET_REGISTRATIONS (Linux before 6.3)");
	uint64_t r = test_rand64();
	int wanted = MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
	int optional[] = { MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
			   MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ };
	for (int i = 0; i < 3; i++)
		if ((r >> i) & 1 && (supported & optional[i]))
			wanted |= optional[i];
	for (int bit = 0; bit < 32; bit++)
		if ((wanted & (1 << bit)) && membarrier(1 << bit))
			fail("register %#x: %m", 1 << bit);
	long before = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
	if (before != wanted)
		fail("registrations %#lx right after registering %#x", before, wanted);
	test_log("registrations %#lx", before);

	test_ready();
	test_waitsig();

	long after = membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS);
	if (after != before)
		fail("registrations %#lx, were %#lx", after, before);
	if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		fail("private expedited barrier after restore: %m");
	pass();
}
