/* unix_scm: fds in flight (SCM_RIGHTS) in unix socket queues at dump time. A stream
 * socketpair holds a message with two fds (the write end of a pipe whose read end the
 * test keeps, and a regular file at an offset that no process holds any more), then a
 * plain message; a datagram socketpair holds a datagram carrying one end of a third
 * socketpair. After restore each message comes out in order with its data and fds, and
 * every fd received is the same object as before: data written through the received
 * pipe end and socket reaches the ends the test kept, the file keeps its offset. */
#define _GNU_SOURCE
#include "zdtmtst.h"
#include "scm_fds.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	test_init("unix_scm", argc, argv);
	int sp[2], dp[2], q[2], p[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dp) || socketpair(AF_UNIX, SOCK_STREAM, 0, q) || pipe(p))
		fail("socketpair/pipe: %m");
	char path[4096];
	int file = open(test_path(path, sizeof(path), "scm.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (file < 0 || write(file, "0123456789abcdef", 16) != 16)
		fail("file: %m");
	off_t offset = (off_t)(test_rand64() % 16);
	lseek(file, offset, SEEK_SET);
	int a[2] = { p[1], file };
	send_fds(sp[0], "first", a, 2);
	send_fds(sp[0], "plain", NULL, 0);
	send_fds(dp[0], "socket", &q[1], 1);
	/* Only the messages hold these now. */
	close(p[1]);
	close(file);
	close(q[1]);
	test_ready();
	test_waitsig();

	int got[2], sock;
	recv_fds(sp[1], "first", got, 2);
	recv_fds(sp[1], "plain", NULL, 0);
	recv_fds(dp[1], "socket", &sock, 1);
	char buf[16];
	if (write(got[0], "pipe", 4) != 4 || read(p[0], buf, 4) != 4 || memcmp(buf, "pipe", 4))
		fail("the pipe end in flight is not the kept read end's pipe");
	if (lseek(got[1], 0, SEEK_CUR) != offset)
		fail("the file in flight is at %ld, was %ld", (long)lseek(got[1], 0, SEEK_CUR), (long)offset);
	if (read(got[1], buf, 1) != 1 || buf[0] != "0123456789abcdef"[offset])
		fail("the file in flight reads the wrong byte");
	if (write(sock, "sock", 4) != 4 || read(q[0], buf, 4) != 4 || memcmp(buf, "sock", 4))
		fail("the socket in flight is not connected to the kept end");
	pass();
}
