/* fds_many: 10,000 fds in one process (rlimit permitting): regular-file descriptions of
 * one file, each at its own offset (read back through the fd after restore), every
 * tenth fd a dup of the one before (shared offset), every seventh close-on-exec. A
 * restore that needs a second fd per description cannot fit them under the limit. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define LEN (256 * 1024)

int main(int argc, char **argv)
{
	static uint64_t content[LEN / 8];
	char path[4096];
	test_init("fds_many", argc, argv);
	struct rlimit limit;
	getrlimit(RLIMIT_NOFILE, &limit);
	int count = limit.rlim_cur > 10100 ? 10000 : (int)limit.rlim_cur - 100;
	if (count < 1000)
		test_skip("RLIMIT_NOFILE below 1100");
	uint64_t seed = test_rand64();
	test_fill(content, LEN, seed);
	int fd = open(test_path(path, sizeof(path), "many.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, content, LEN) != LEN)
		fail("write many.bin: %m");
	close(fd);
	int *fds = calloc(count, sizeof(int));
	off_t *offsets = calloc(count, sizeof(off_t));
	for (int i = 0; i < count; i++) {
		if (i % 10 == 9)
			fds[i] = dup(fds[i - 1]);
		else
			fds[i] = open(path, O_RDONLY | (i % 7 == 0 ? O_CLOEXEC : 0));
		if (fds[i] < 0)
			fail("fd %d of %d: %m", i, count);
		if (i % 10 != 9) {
			offsets[i] = (off_t)(test_rand64() % (LEN / 8 - 1)) * 8;
			lseek(fds[i], offsets[i], SEEK_SET);
		} else {
			offsets[i] = offsets[i - 1];
		}
	}
	test_ready();
	test_waitsig();
	for (int i = 0; i < count; i++) {
		int flags = fcntl(fds[i], F_GETFD);
		if (flags < 0)
			fail("fd %d gone: %m", fds[i]);
		if (!!(flags & FD_CLOEXEC) != (i % 10 != 9 && i % 7 == 0))
			fail("fd %d: close-on-exec %d", fds[i], !!(flags & FD_CLOEXEC));
		/* A dup shares its offset: read through the later fd only, then check both. */
		if (i % 10 == 8)
			continue;
		uint64_t word;
		if (pread(fds[i], &word, 8, 0) != 8 || lseek(fds[i], 0, SEEK_CUR) != offsets[i])
			fail("fd %d: offset %ld, was %ld", fds[i], (long)lseek(fds[i], 0, SEEK_CUR), (long)offsets[i]);
		if (read(fds[i], &word, 8) != 8 || word != content[offsets[i] / 8])
			fail("fd %d: read %#lx at %ld, expected %#lx", fds[i], (unsigned long)word, (long)offsets[i],
			     (unsigned long)content[offsets[i] / 8]);
		if (i % 10 == 9 && lseek(fds[i - 1], 0, SEEK_CUR) != offsets[i] + 8)
			fail("fd %d and its dup %d no longer share an offset", fds[i - 1], fds[i]);
	}
	pass();
}
