/* sysv_shm_host: a System V segment attached twice (read-write and read-only) in the
 * IPC namespace the test starts in. In the host flavor that is the host's namespace,
 * which a dump does not take along: the segment outlives the dumped process (it is not
 * removed) and restore attaches it again at the same addresses. In the ns flavor the
 * namespace is the tree's own and is dumped with the segment.
 * After restore: the data, one segment behind both attaches, the read-only attach
 * still read-only. The segment is removed first thing after restore, so a failing
 * check does not leave it behind. */
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#define SIZE (256 << 10)

int main(int argc, char **argv)
{
	test_init("sysv_shm_host", argc, argv);
	uint64_t seed = test_rand64();
	int id = shmget(IPC_PRIVATE, SIZE, IPC_CREAT | 0600);
	if (id < 0)
		fail("shmget: %m");
	volatile uint64_t *rw = shmat(id, NULL, 0);
	const volatile uint64_t *ro = shmat(id, NULL, SHM_RDONLY);
	if (rw == (void *)-1 || ro == (void *)-1) {
		shmctl(id, IPC_RMID, NULL);
		fail("shmat: %m");
	}
	test_fill((void *)rw, SIZE, seed);
	test_ready();
	test_waitsig();

	if (shmctl(id, IPC_RMID, NULL))
		fail("IPC_RMID: %m");
	if (test_check((const void *)rw, SIZE, seed) != -1 || test_check((const void *)ro, SIZE, seed) != -1)
		fail("data changed");
	uint64_t value = test_rand64() | 1;
	rw[77] = value;
	if (ro[77] != value)
		fail("the two attaches are not one segment");
	if (mprotect((void *)ro, sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		fail("read-only attach could be made writable (mprotect: %m)");
	pass();
}
