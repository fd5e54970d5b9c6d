/* file_mtime: a dump and restore leave a regular file's times alone: the file is open
 * read-write (with an offset) and mapped shared, its mtime set in the past; after
 * restore it is unchanged, as are the data and the offset. The atime is not checked:
 * mmap(2) of the file at restore updates it (relatime, atime older than mtime), as under
 * CRIU. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	test_init("file_mtime", argc, argv);
	char path[4096];
	test_path(path, sizeof(path), "file_mtime.data");
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	if (fd < 0)
		fail("open %s", path);
	char data[8192];
	test_fill(data, sizeof(data), 7);
	if (write(fd, data, sizeof(data)) != sizeof(data))
		fail("write");
	void *map = mmap(NULL, sizeof(data), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		fail("mmap");
	if (lseek(fd, 100, SEEK_SET) != 100)
		fail("lseek");
	struct timespec times[2] = { { 1000000000 + (long)(test_rand64() % 100000), 123456789 }, { 1100000000, 987654321 } };
	if (futimens(fd, times))
		fail("futimens");
	struct stat before;
	if (fstat(fd, &before))
		fail("fstat before");

	test_ready();
	test_waitsig();

	struct stat after;
	if (stat(path, &after))
		fail("stat after");
	if (after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec)
		fail("mtime %ld.%09ld, was %ld.%09ld", (long)after.st_mtim.tv_sec, after.st_mtim.tv_nsec, (long)before.st_mtim.tv_sec, before.st_mtim.tv_nsec);
	if (test_check(map, sizeof(data), 7) != -1)
		fail("mapped data changed");
	if (lseek(fd, 0, SEEK_CUR) != 100)
		fail("offset lost");
	pass();
}
