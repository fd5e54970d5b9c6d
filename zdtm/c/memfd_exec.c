/* memfd_exec: a program held only in a memfd, which the test runs with execveat after
 * restore. The memfd gets a copy of the test's own executable, is reopened read-only
 * through /proc/self/fd and its writable fd closed (execve refuses a file open for
 * writing: ETXTBSY); a child forked after restore runs it with execveat(AT_EMPTY_PATH)
 * and exits with the code it is told. After restore the memfd must not be held
 * writable by anyone (crust's restore included). */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--exit-with"))
		return atoi(argv[2]);
	test_init("memfd_exec", argc, argv);
	int rw = (int)syscall(SYS_memfd_create, "memfd_exec.bin", MFD_CLOEXEC);
	int exe = open("/proc/self/exe", O_RDONLY);
	if (rw < 0 || exe < 0)
		fail("memfd_create or open exe: %m");
	char buf[65536];
	ssize_t n;
	while ((n = read(exe, buf, sizeof(buf))) > 0)
		if (write(rw, buf, n) != n)
			fail("copy exe: %m");
	close(exe);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", rw);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		fail("reopen the memfd read-only: %m");
	close(rw);

	test_ready();
	test_waitsig();

	pid_t child = fork();
	if (child < 0)
		fail("fork: %m");
	if (child == 0) {
		char *args[] = { "memfd_exec", "--exit-with", "42", NULL };
		char *env[] = { NULL };
		syscall(SYS_execveat, ro, "", args, env, AT_EMPTY_PATH);
		_exit(errno == ETXTBSY ? 100 : 101);
	}
	int status;
	if (waitpid(child, &status, 0) != child)
		fail("waitpid: %m");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 42)
		fail("execveat of the memfd: %s", WIFEXITED(status) && WEXITSTATUS(status) == 100 ? "text file busy" : "failed");
	pass();
}
