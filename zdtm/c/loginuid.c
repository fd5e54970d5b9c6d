/* loginuid: the process sets a random audit login uid (/proc/self/loginuid, root with
 * CAP_AUDIT_CONTROL); after restore it reads the same uid back. Its session id is the
 * kernel's to number and is not compared. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long read_loginuid(void)
{
	char buf[32] = { 0 };
	int fd = open("/proc/self/loginuid", O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

int main(int argc, char **argv)
{
	test_init("loginuid", argc, argv);
	long wanted = 1000 + (long)(test_rand64() % 60000);
	int fd = open("/proc/self/loginuid", O_WRONLY);
	if (fd < 0)
		test_skip("no /proc/self/loginuid (kernel without audit)");
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%ld", wanted);
	if (write(fd, buf, len) != len) {
		if (errno == EPERM)
			test_skip("writing /proc/self/loginuid refused (EPERM: no CAP_AUDIT_CONTROL, or immutable)");
		fail("write loginuid %ld: %m", wanted);
	}
	close(fd);
	if (read_loginuid() != wanted)
		fail("loginuid %ld right after setting %ld", read_loginuid(), wanted);

	test_ready();
	test_waitsig();

	long after = read_loginuid();
	if (after != wanted)
		fail("loginuid %ld, was %ld", after, wanted);
	pass();
}
