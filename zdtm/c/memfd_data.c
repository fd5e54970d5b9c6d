/* memfd_data: a sealed, sparse memfd held through three fds (two descriptions with their
 * own offsets, one dup), mapped shared and privately (with a copy-on-write page), and
 * inherited by a child that maps it too. After restore: the data and the holes, the
 * offsets, the seals, one inode behind every fd and mapping (a write through the shared
 * mapping shows in the fds and in the child's mapping), the private copy kept apart. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define SIZE (4 << 20)
/* 4 KiB: the unit the data is laid out in, not necessarily the kernel's page. */
#define PAGE 4096

static uint64_t seed;
static volatile uint64_t *shared_map;
static int wake[2], answer[2];

static int child(void *arg)
{
	uint64_t value;
	child_ready();
	if (read(wake[0], &value, 8) != 8)
		CHILD_FAIL("read the value to look for: %m");
	int ok = shared_map[100] == value;
	if (write(answer[1], &ok, sizeof(ok)) != sizeof(ok))
		CHILD_FAIL("answer: %m");
	if (!ok)
		CHILD_FAIL("child's mapping has %#lx, parent wrote %#lx", (unsigned long)shared_map[100], (unsigned long)value);
	return 0;
}

int main(int argc, char **argv)
{
	static uint64_t chunk[16384];
	test_init("memfd_data", argc, argv);
	seed = test_rand64();
	int a = memfd_create("zdtm-memfd", MFD_ALLOW_SEALING);
	if (a < 0)
		fail("memfd_create: %m");
	if (ftruncate(a, SIZE))
		fail("ftruncate: %m");
	/* Data in pages 0-3 and at 1 MiB (64 KiB); the rest are holes. */
	test_fill(chunk, 4 * PAGE, seed);
	if (pwrite(a, chunk, 4 * PAGE, 0) != 4 * PAGE)
		fail("pwrite: %m");
	test_fill(chunk, sizeof(chunk), seed + 1);
	if (pwrite(a, chunk, sizeof(chunk), 1 << 20) != sizeof(chunk))
		fail("pwrite: %m");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", a);
	int b = open(path, O_RDONLY);
	int c = dup(a);
	if (b < 0 || c < 0)
		fail("second description or dup: %m");
	off_t off_a = (off_t)(test_rand64() % SIZE), off_b = (off_t)(test_rand64() % SIZE);
	lseek(a, off_a, SEEK_SET);
	lseek(b, off_b, SEEK_SET);
	shared_map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
	uint64_t *private_map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, a, 0);
	if (shared_map == MAP_FAILED || private_map == MAP_FAILED)
		fail("mmap: %m");
	private_map[0] = ~seed; /* copy-on-write: the memfd keeps its data */
	if (fcntl(a, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		fail("F_ADD_SEALS: %m");
	if (pipe(wake) || pipe(answer))
		fail("pipe: %m");
	pid_t kid = fork_child(child, NULL);
	test_ready();
	test_waitsig();

	if (lseek(a, 0, SEEK_CUR) != off_a || lseek(c, 0, SEEK_CUR) != off_a || lseek(b, 0, SEEK_CUR) != off_b)
		fail("offsets %ld/%ld/%ld, were %ld/%ld/%ld", (long)lseek(a, 0, SEEK_CUR), (long)lseek(c, 0, SEEK_CUR),
		     (long)lseek(b, 0, SEEK_CUR), (long)off_a, (long)off_a, (long)off_b);
	int seals = fcntl(b, F_GET_SEALS);
	if (seals != (F_SEAL_SHRINK | F_SEAL_GROW))
		fail("seals %#x, were %#x", seals, F_SEAL_SHRINK | F_SEAL_GROW);
	struct stat st;
	if (fstat(b, &st) || st.st_size != SIZE)
		fail("size %ld, was %d", (long)st.st_size, SIZE);
	if (pread(b, chunk, 4 * PAGE, 0) != 4 * PAGE || test_check(chunk, 4 * PAGE, seed) != -1)
		fail("data of pages 0-3 changed");
	if (pread(b, chunk, sizeof(chunk), 1 << 20) != sizeof(chunk) || test_check(chunk, sizeof(chunk), seed + 1) != -1)
		fail("data at 1 MiB changed");
	if (test_check((const void *)shared_map, 4 * PAGE, seed) != -1)
		fail("shared mapping does not show the data");
	if (private_map[0] != ~seed)
		fail("private mapping's copy-on-write page has %#lx, not %#lx", (unsigned long)private_map[0], (unsigned long)~seed);
	/* The shared mapping holds the pattern (checked above): the private one must show
	 * the same everywhere but its one written word. */
	if (memcmp(private_map + 1, (const void *)(shared_map + 1), 4 * PAGE - 8))
		fail("private mapping does not show the memfd's data beside its copy-on-write word");
	/* Holes are whole pages of the kernel's size (64 KiB on ppc64el): the first one
	 * starts where the page holding the first 16 KiB ends. */
	long page_size = sysconf(_SC_PAGESIZE);
	off_t data_end = (4 * PAGE + page_size - 1) / page_size * page_size;
	off_t hole = lseek(b, 0, SEEK_HOLE), data = lseek(b, data_end, SEEK_DATA);
	lseek(b, off_b, SEEK_SET);
	if (hole != data_end || data != 1 << 20)
		fail("holes: first hole at %ld, next data at %ld; were %ld and %d", (long)hole, (long)data, (long)data_end, 1 << 20);
	/* One inode: a write through the shared mapping shows in the fds and the child. */
	uint64_t value = test_rand64() | 1;
	shared_map[100] = value;
	uint64_t seen;
	if (pread(c, &seen, 8, 800) != 8 || seen != value)
		fail("write through the shared mapping not seen through the fd");
	if (private_map[100] == value)
		fail("private mapping shares pages with the shared one");
	if (write(wake[1], &value, 8) != 8)
		fail("wake child: %m");
	int ok = 0;
	if (read(answer[0], &ok, sizeof(ok)) != sizeof(ok) || !ok)
		fail("child's mapping does not share the memfd (see log)");
	if (reap_ok(kid))
		fail("child failed");
	pass();
}
