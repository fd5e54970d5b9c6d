/* file_flags: regular-file fds with O_DIRECT (where the filesystem allows it), O_PATH,
 * O_NONBLOCK; a file renamed after it was opened (restored from its new name); and a
 * 256 MiB sparse file that was unlinked while open, with data in three places: after
 * restore it has the same size, the same data and still its holes (a restore that
 * wrote the zeros would fill them). */
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPARSE (256L << 20)

static const off_t data_at[3] = { 0, 100L << 20, SPARSE - 4096 };
static const size_t data_len[3] = { 4096, 65536, 4096 };

int main(int argc, char **argv)
{
	char path[4096], before[4096], moved[4096], sparse_path[4096];
	static char block[65536] __attribute__((aligned(4096)));
	test_init("file_flags", argc, argv);
	uint64_t seed = test_rand64();
	test_fill(block, sizeof(block), seed);

	int plain = open(test_path(path, sizeof(path), "flags.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (plain < 0 || write(plain, block, sizeof(block)) != sizeof(block))
		fail("write flags.bin: %m");
	int direct = open(path, O_RDONLY | O_DIRECT);
	if (direct < 0 && errno != EINVAL)
		fail("open O_DIRECT: %m");
	if (direct < 0)
		test_log("O_DIRECT not supported here: not checked");
	int opath = open(path, O_PATH);
	int nonblock = open(path, O_RDONLY | O_NONBLOCK);
	if (opath < 0 || nonblock < 0)
		fail("open O_PATH/O_NONBLOCK: %m");
	lseek(nonblock, 4096, SEEK_SET);
	/* Renamed after open: the fd follows the inode to its new name. */
	int renamed = open(test_path(before, sizeof(before), "before.bin"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (renamed < 0 || write(renamed, "moved", 5) != 5)
		fail("before.bin: %m");
	if (rename(before, test_path(moved, sizeof(moved), "after.bin")))
		fail("rename: %m");

	int sparse = open(test_path(sparse_path, sizeof(sparse_path), "sparse.bin"), O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (sparse < 0 || ftruncate(sparse, SPARSE))
		fail("sparse.bin: %m");
	for (int i = 0; i < 3; i++)
		if (pwrite(sparse, block, data_len[i], data_at[i]) != (ssize_t)data_len[i])
			fail("pwrite sparse: %m");
	if (unlink(sparse_path))
		fail("unlink: %m");
	/* Holes are as fine as the file system's blocks or pages (64 KiB on ppc64el's
	 * tmpfs): the first one is where it is now, whatever that is. */
	off_t hole_before = lseek(sparse, 0, SEEK_HOLE);
	lseek(sparse, 0, SEEK_SET);
	test_ready();
	test_waitsig();

	if (direct >= 0 && !(fcntl(direct, F_GETFL) & O_DIRECT))
		fail("O_DIRECT lost");
	if (!(fcntl(opath, F_GETFL) & O_PATH))
		fail("O_PATH lost");
	char c;
	if (read(opath, &c, 1) != -1 || errno != EBADF)
		fail("O_PATH fd reads");
	if (!(fcntl(nonblock, F_GETFL) & O_NONBLOCK) || lseek(nonblock, 0, SEEK_CUR) != 4096)
		fail("O_NONBLOCK fd: flags %#x offset %ld", fcntl(nonblock, F_GETFL), (long)lseek(nonblock, 0, SEEK_CUR));
	char word[8];
	if (pread(renamed, word, 5, 0) != 5 || memcmp(word, "moved", 5))
		fail("renamed file content");
	char link[4096], fdpath[64];
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", renamed);
	ssize_t n = readlink(fdpath, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, moved))
		fail("renamed file is %s, expected %s", link, moved);

	struct stat st;
	if (fstat(sparse, &st) || st.st_size != SPARSE)
		fail("sparse size %ld", (long)st.st_size);
	static char back[65536];
	for (int i = 0; i < 3; i++)
		if (pread(sparse, back, data_len[i], data_at[i]) != (ssize_t)data_len[i] || memcmp(back, block, data_len[i]))
			fail("sparse data %d changed", i);
	off_t hole = lseek(sparse, 0, SEEK_HOLE), next = lseek(sparse, hole, SEEK_DATA);
	if (hole != hole_before || next != data_at[1])
		fail("sparse file: first hole at %ld, next data at %ld (were %ld and %ld)", (long)hole, (long)next, (long)hole_before,
		     (long)data_at[1]);
	/* Allocated blocks: the data, not 256 MiB of zeros. */
	if (st.st_blocks * 512L > 16L << 20)
		fail("sparse file takes %ld bytes on disk", (long)st.st_blocks * 512L);
	pass();
}
