/* unix_scm_gone: fds in flight (SCM_RIGHTS) in the queues of unix sockets whose
 * sending peer is gone at dump time: a stream socketpair whose second end sent a
 * message with the write end of a pipe, then a plain message, and was closed; a
 * datagram socketpair whose second end sent a datagram with an eventfd and was closed.
 * After restore the messages come out in order with their fds (the pipe end reaches the
 * read end the test kept, the eventfd keeps its count), the stream socket then reads
 * EOF, a write to the datagram socket's gone peer fails with ECONNREFUSED, and both
 * poll as before. */
#define _GNU_SOURCE
#include "zdtmtst.h"
#include "scm_fds.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static short poll_mask(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP | POLLHUP };
	poll(&p, 1, 0);
	return p.revents;
}

int main(int argc, char **argv)
{
	test_init("unix_scm_gone", argc, argv);
	int sp[2], dp[2], p[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dp) || pipe(p))
		fail("socketpair/pipe: %m");
	uint64_t count = 1 + test_rand64() % 100000;
	int efd = eventfd(0, EFD_NONBLOCK);
	if (efd < 0 || write(efd, &count, sizeof(count)) != sizeof(count))
		fail("eventfd: %m");
	send_fds(sp[1], "first", &p[1], 1);
	send_fds(sp[1], "plain", NULL, 0);
	send_fds(dp[1], "counter", &efd, 1);
	/* Only the messages hold these now, and the senders are gone. */
	close(p[1]);
	close(efd);
	close(sp[1]);
	close(dp[1]);
	short stream_events = poll_mask(sp[0]), dgram_events = poll_mask(dp[0]);
	test_ready();
	test_waitsig();

	if (poll_mask(sp[0]) != stream_events || poll_mask(dp[0]) != dgram_events)
		fail("poll events %#x %#x, were %#x %#x", poll_mask(sp[0]), poll_mask(dp[0]), stream_events, dgram_events);
	int pipe_end, counter;
	recv_fds(sp[0], "first", &pipe_end, 1);
	recv_fds(sp[0], "plain", NULL, 0);
	recv_fds(dp[0], "counter", &counter, 1);
	char buf[16];
	if (write(pipe_end, "pipe", 4) != 4 || read(p[0], buf, 4) != 4 || memcmp(buf, "pipe", 4))
		fail("the pipe end in flight is not the kept read end's pipe");
	uint64_t now = 0;
	if (read(counter, &now, sizeof(now)) != sizeof(now) || now != count)
		fail("the eventfd in flight counts %llu, not %llu", (unsigned long long)now, (unsigned long long)count);
	ssize_t n = recv(sp[0], buf, sizeof(buf), MSG_DONTWAIT);
	if (n != 0)
		fail("no EOF after the gone peer's messages: %zd (%m)", n);
	n = send(dp[0], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n >= 0 || errno != ECONNREFUSED)
		fail("a datagram to the gone peer gave %zd (%m), not ECONNREFUSED", n);
	pass();
}
