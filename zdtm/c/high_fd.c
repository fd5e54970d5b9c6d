/* high_fd: regular files at fds 1000 and 4000 (rlimit permitting) with random offsets,
 * /dev/null at fd 777, nothing in between. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LEN (64 * 1024)

int main(int argc, char **argv)
{
	static uint64_t content[LEN / 8];
	char path[4096];
	test_init("high_fd", argc, argv);
	struct rlimit limit;
	getrlimit(RLIMIT_NOFILE, &limit);
	int top = limit.rlim_cur > 4001 ? 4000 : (int)limit.rlim_cur - 1;
	uint64_t seed = test_rand64();
	test_fill(content, LEN, seed);

	int fd = open(test_path(path, sizeof(path), "high.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, content, LEN) != LEN)
		fail("write high.bin: %m");
	if (dup2(fd, 1000) != 1000)
		fail("dup2 1000: %m");
	close(fd);
	off_t offset_1000 = (off_t)(test_rand64() % (LEN / 8)) * 8;
	lseek(1000, offset_1000, SEEK_SET);
	fd = open(path, O_RDONLY);
	if (fd < 0 || dup3(fd, top, O_CLOEXEC) != top)
		fail("dup3 %d: %m", top);
	close(fd);
	off_t offset_top = (off_t)(test_rand64() % (LEN / 8)) * 8;
	lseek(top, offset_top, SEEK_SET);
	fd = open("/dev/null", O_WRONLY);
	if (fd < 0 || dup2(fd, 777) != 777)
		fail("dup2 777: %m");
	close(fd);

	test_ready();
	test_waitsig();

	if (lseek(1000, 0, SEEK_CUR) != offset_1000 || lseek(top, 0, SEEK_CUR) != offset_top)
		fail("offsets changed");
	if (fcntl(top, F_GETFD) != FD_CLOEXEC || fcntl(1000, F_GETFD) != 0)
		fail("FD_CLOEXEC flags changed");
	uint64_t word;
	if (read(1000, &word, 8) != 8 || word != content[offset_1000 / 8])
		fail("fd 1000 reads other data");
	if (read(top, &word, 8) != 8 || word != content[offset_top / 8])
		fail("fd %d reads other data", top);
	char link[256] = {0};
	if (readlink("/proc/self/fd/777", link, sizeof(link) - 1) < 0 || strcmp(link, "/dev/null"))
		fail("fd 777 is %s, not /dev/null", link);
	for (int other = 3; other < 1000; other++)
		if (other != 777 && fcntl(other, F_GETFD) != -1)
			fail("unexpected fd %d after restore", other);
	pass();
}
