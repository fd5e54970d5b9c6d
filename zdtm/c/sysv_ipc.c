/* sysv_ipc: System V IPC in the tree's own IPC namespace (the test makes one in the host
 * flavor; the ns flavor's init already has one).
 * - segment A (keyed, mode 0640, 1 MiB + 100 bytes, sparse: data at 0-64 KiB and 512 KiB)
 *   attached read-write with an mprotect split in the middle, attached a second time
 *   read-only, both attaches inherited by a child;
 * - segment B (IPC_PRIVATE) removed while attached;
 * - segment C (keyed) holding data, attached by nobody;
 * - a semaphore set of 5 with set values;
 * - a queue with 5 messages of different types and sizes and a lowered byte limit, and
 *   an empty private queue.
 * After restore: the same ids, keys and modes; the data and holes; one segment behind
 * every attach (a write shows in the read-only attach and in the child); the read-only
 * attach stays read-only; B still marked removed; semaphore values; the messages in order
 * with their types; the queue's limit. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

#define KEY_A 0x5a170001
#define KEY_C 0x5a170003
#define KEY_SEM 0x5a170004
#define KEY_MSG 0x5a170005
#define SIZE_A ((1 << 20) + 100)
#define SIZE_B (64 << 10)
#define SIZE_C (128 << 10)

static uint64_t seed;
static volatile uint64_t *map_a;
static int wake[2], answer[2];

struct message {
	long mtype;
	char text[4096];
};

static const long msg_types[5] = { 3, 1, 7, 3, 42 };
static const size_t msg_sizes[5] = { 0, 1, 100, 4000, 17 };

static void fill_message(struct message *m, int index)
{
	m->mtype = msg_types[index];
	test_fill(m->text, sizeof(m->text) & ~7UL, seed + 100 + index);
}

static int child(void *arg)
{
	uint64_t value;
	child_ready();
	if (read(wake[0], &value, 8) != 8)
		CHILD_FAIL("read the value to look for: %m");
	int ok = map_a[1000] == value;
	if (write(answer[1], &ok, sizeof(ok)) != sizeof(ok))
		CHILD_FAIL("answer: %m");
	if (!ok)
		CHILD_FAIL("child's attach of A has %#lx, parent wrote %#lx", (unsigned long)map_a[1000], (unsigned long)value);
	return 0;
}

int main(int argc, char **argv)
{
	static struct message m;
	test_init("sysv_ipc", argc, argv);
	/* Host flavor: give the tree an IPC namespace of its own (under the ns flavor's
	 * init, pid 1, the namespace is already the tree's). */
	if (getppid() != 1 && unshare(CLONE_NEWIPC))
		fail("unshare(CLONE_NEWIPC): %m");
	seed = test_rand64();
	long page = sysconf(_SC_PAGESIZE);

	int a = shmget(KEY_A, SIZE_A, IPC_CREAT | IPC_EXCL | 0640);
	int b = shmget(IPC_PRIVATE, SIZE_B, IPC_CREAT | 0600);
	int c = shmget(KEY_C, SIZE_C, IPC_CREAT | IPC_EXCL | 0604);
	if (a < 0 || b < 0 || c < 0)
		fail("shmget: %m");
	map_a = shmat(a, NULL, 0);
	uint64_t *map_a_ro = shmat(a, NULL, SHM_RDONLY);
	uint64_t *map_b = shmat(b, NULL, 0);
	uint64_t *map_c = shmat(c, NULL, 0);
	if (map_a == (void *)-1 || map_a_ro == (void *)-1 || map_b == (void *)-1 || map_c == (void *)-1)
		fail("shmat: %m");
	test_fill((void *)map_a, 64 << 10, seed);
	test_fill((char *)map_a + (512 << 10), 64 << 10, seed + 1);
	test_fill(map_b, SIZE_B, seed + 2);
	test_fill(map_c, SIZE_C, seed + 3);
	if (shmdt(map_c))
		fail("shmdt C: %m");
	if (shmctl(b, IPC_RMID, NULL))
		fail("IPC_RMID B: %m");
	/* Split A's read-write attach in three areas. */
	if (mprotect((char *)map_a + 8 * page, page, PROT_READ))
		fail("mprotect: %m");

	int sem = semget(KEY_SEM, 5, IPC_CREAT | IPC_EXCL | 0600);
	unsigned short sem_values[5] = { 0, 1, 7, 300, 32767 };
	if (sem < 0 || semctl(sem, 0, SETALL, sem_values))
		fail("semaphores: %m");

	int q = msgget(KEY_MSG, IPC_CREAT | IPC_EXCL | 0620);
	int q_empty = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (q < 0 || q_empty < 0)
		fail("msgget: %m");
	struct msqid_ds qds;
	if (msgctl(q, IPC_STAT, &qds))
		fail("IPC_STAT queue: %m");
	qds.msg_qbytes = 8000;
	if (msgctl(q, IPC_SET, &qds))
		fail("IPC_SET queue: %m");
	for (int i = 0; i < 5; i++) {
		fill_message(&m, i);
		if (msgsnd(q, &m, msg_sizes[i], IPC_NOWAIT))
			fail("msgsnd %d: %m", i);
	}
	if (pipe(wake) || pipe(answer))
		fail("pipe: %m");
	pid_t kid = fork_child(child, NULL);
	/* The kernel counts an attach once per area (a split counts twice). */
	struct shmid_ds ds;
	if (shmctl(a, IPC_STAT, &ds))
		fail("IPC_STAT A: %m");
	unsigned long nattch_a = ds.shm_nattch;
	if (shmctl(b, IPC_STAT, &ds))
		fail("IPC_STAT B: %m");
	unsigned long nattch_b = ds.shm_nattch;
	test_ready();
	test_waitsig();

	/* Ids, keys, modes. */
	if (shmget(KEY_A, 0, 0) != a || shmget(KEY_C, 0, 0) != c || semget(KEY_SEM, 0, 0) != sem || msgget(KEY_MSG, 0) != q)
		fail("ids by key: A %d/%d C %d/%d sem %d/%d queue %d/%d", shmget(KEY_A, 0, 0), a, shmget(KEY_C, 0, 0), c,
		     semget(KEY_SEM, 0, 0), sem, msgget(KEY_MSG, 0), q);
	if (shmctl(a, IPC_STAT, &ds))
		fail("IPC_STAT A: %m");
	if ((ds.shm_perm.mode & 0777) != 0640 || ds.shm_segsz != SIZE_A || ds.shm_nattch != nattch_a)
		fail("A: mode %#o size %zu attaches %lu, were 0640 %d %lu", ds.shm_perm.mode, ds.shm_segsz, (unsigned long)ds.shm_nattch,
		     SIZE_A, nattch_a);
	if (shmctl(b, IPC_STAT, &ds))
		fail("IPC_STAT B: %m");
	if (!(ds.shm_perm.mode & SHM_DEST) || ds.shm_perm.__key != IPC_PRIVATE || ds.shm_nattch != nattch_b)
		fail("B: mode %#o key %#x attaches %lu; should be removed, private, attached %lu times", ds.shm_perm.mode,
		     ds.shm_perm.__key, (unsigned long)ds.shm_nattch, nattch_b);
	if (shmctl(c, IPC_STAT, &ds))
		fail("IPC_STAT C: %m");
	if ((ds.shm_perm.mode & 0777) != 0604 || ds.shm_nattch != 0)
		fail("C: mode %#o attaches %lu, were 0604 0", ds.shm_perm.mode, (unsigned long)ds.shm_nattch);

	/* Data and holes. */
	if (test_check((const void *)map_a, 64 << 10, seed) != -1 || test_check((const char *)map_a + (512 << 10), 64 << 10, seed + 1) != -1)
		fail("A's data changed");
	for (size_t off = 64 << 10; off < 512 << 10; off += 8)
		if (*(const uint64_t *)((const char *)map_a + off))
			fail("A's hole at %zu holds data", off);
	if (test_check(map_b, SIZE_B, seed + 2) != -1)
		fail("B's data changed");
	map_c = shmat(c, NULL, SHM_RDONLY);
	if (map_c == (void *)-1 || test_check(map_c, SIZE_C, seed + 3) != -1)
		fail("C's data changed or C cannot be attached: %m");
	shmdt(map_c);

	/* One segment behind every attach; the read-only one stays read-only. */
	uint64_t value = test_rand64() | 1;
	map_a[1000] = value;
	if (map_a_ro[1000] != value)
		fail("write through A's read-write attach not seen in its read-only attach");
	if (mprotect(map_a_ro, page, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		fail("read-only attach of A could be made writable (mprotect: %m)");
	if (mprotect((char *)map_a + 8 * page, page, PROT_READ | PROT_WRITE))
		fail("read-write attach's read-only part cannot be made writable again: %m");
	if (write(wake[1], &value, 8) != 8)
		fail("wake child: %m");

	/* Semaphores. */
	unsigned short now[5];
	if (semctl(sem, 0, GETALL, now))
		fail("GETALL: %m");
	for (int i = 0; i < 5; i++)
		if (now[i] != sem_values[i])
			fail("semaphore %d is %u, was %u", i, now[i], sem_values[i]);
	struct sembuf op = { .sem_num = 2, .sem_op = -7, .sem_flg = IPC_NOWAIT };
	if (semop(sem, &op, 1) || semctl(sem, 2, GETVAL) != 0)
		fail("semop on the restored set: %m");

	/* Messages, in order, with their types. */
	if (msgctl(q, IPC_STAT, &qds))
		fail("IPC_STAT queue: %m");
	if (qds.msg_qbytes != 8000 || qds.msg_qnum != 5 || (qds.msg_perm.mode & 0777) != 0620)
		fail("queue: limit %lu, %lu messages, mode %#o; were 8000, 5, 0620", (unsigned long)qds.msg_qbytes,
		     (unsigned long)qds.msg_qnum, qds.msg_perm.mode);
	for (int i = 0; i < 5; i++) {
		static struct message want;
		fill_message(&want, i);
		ssize_t got = msgrcv(q, &m, sizeof(m.text), 0, IPC_NOWAIT);
		if (got != (ssize_t)msg_sizes[i] || m.mtype != msg_types[i] || memcmp(m.text, want.text, msg_sizes[i]))
			fail("message %d: %zd bytes of type %ld, was %zu bytes of type %ld (or its text differs)", i, got, m.mtype,
			     msg_sizes[i], msg_types[i]);
	}
	if (msgctl(q_empty, IPC_STAT, &qds) || qds.msg_qnum != 0)
		fail("private queue lost or not empty: %m");

	int ok = 0;
	if (read(answer[0], &ok, sizeof(ok)) != sizeof(ok) || !ok)
		fail("child's attach does not share segment A (see log)");
	if (reap_ok(kid))
		fail("child failed");
	pass();
}
