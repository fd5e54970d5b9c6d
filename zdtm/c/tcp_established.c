/* tcp_established: an established TCP connection over loopback to a peer outside the
 * dumped tree (a double-forked process the harness adopts). Both sides stream 64-bit
 * sequence numbers to each other the whole time, so at dump time data sits in both
 * queues. After restore the test checks that its numbers go on with no gap, repeat or
 * reset, then asks the peer for its own verdict over the same connection: the peer
 * must have seen every number in order and no reset or EOF. Dumped with
 * --tcp-established (TCP_REPAIR, nftables lock). */
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define END_MARK 0xffffffffffffffffULL

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	size_t put = 0;
	while (put < len) {
		ssize_t n = write(fd, (const char *)buf + put, len - put);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		put += (size_t)n;
	}
	return 0;
}

/* The peer: sends 0, 1, 2, ... every millisecond, checks what it receives is 0, 1, 2,
 * ... until END_MARK, then answers one byte: 0 all in order, 1 a gap or repeat, 2 a
 * reset or EOF before the end. */
static void peer(int listener)
{
	int s = accept(listener, NULL, NULL);
	close(listener);
	if (s < 0)
		_exit(3);
	uint64_t out = 0, expect = 0, got;
	uint8_t verdict = 0;
	for (;;) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, 1);
		if (r < 0 && errno != EINTR)
			_exit(4);
		if (r > 0) {
			if (read_full(s, &got, 8)) {
				verdict = 2;
				break;
			}
			if (got == END_MARK)
				break;
			if (got != expect) {
				verdict = 1;
				break;
			}
			expect++;
			continue;
		}
		if (write_full(s, &out, 8)) {
			verdict = 2;
			break;
		}
		out++;
	}
	/* Stop sending before answering: the test reads up to the verdict. */
	uint64_t stop = END_MARK;
	write_full(s, &stop, 8);
	write_full(s, &verdict, 1);
	close(s);
	_exit(0);
}

int main(int argc, char **argv)
{
	test_init("tcp_established", argc, argv);
	int listener = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) || listen(listener, 1) ||
	    getsockname(listener, (struct sockaddr *)&addr, &len))
		fail("listener: %m");
	/* Double fork: the peer is adopted by the harness, outside the dumped tree. */
	pid_t middle = fork();
	if (middle == 0) {
		if (test_ready_fd() >= 0)
			close(test_ready_fd());
		test_ready_sent();
		setsid();
		if (fork() == 0)
			peer(listener);
		_exit(0);
	}
	waitpid(middle, NULL, 0);
	close(listener);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)))
		fail("connect: %m");
	uint64_t out = 0, expect = 0, got;
	int ready = 0;
	/* Read half as fast as the peer sends: unread data piles up in the receive queue,
	 * so the dump finds some there. */
	for (unsigned long tick = 0; !test_sig_received(); tick++) {
		struct timespec ms = { 0, 1000 * 1000 };
		nanosleep(&ms, NULL);
		if (write_full(s, &out, 8))
			fail("send after %lu numbers: %m", (unsigned long)out);
		out++;
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (tick % 2 == 0 && poll(&p, 1, 0) > 0) {
			if (read_full(s, &got, 8))
				fail("connection reset or closed after %lu numbers (%m)", (unsigned long)expect);
			if (got != expect)
				fail("got %lu, expected %lu", (unsigned long)got, (unsigned long)expect);
			expect++;
		}
		if (!ready && expect > 50 && out > 50) {
			test_ready();
			ready = 1;
		}
	}
	uint64_t at_term = expect;
	/* After the restore: a few hundred more numbers must arrive in order. */
	while (expect < at_term + 300) {
		if (read_full(s, &got, 8))
			fail("connection reset or closed after restore, at %lu (%m)", (unsigned long)expect);
		if (got != expect)
			fail("after restore got %lu, expected %lu", (unsigned long)got, (unsigned long)expect);
		expect++;
	}
	uint64_t end = END_MARK;
	if (write_full(s, &end, 8))
		fail("send end mark: %m");
	for (;;) {
		if (read_full(s, &got, 8))
			fail("connection closed before the peer's verdict");
		if (got == END_MARK)
			break;
		if (got != expect)
			fail("after restore got %lu, expected %lu", (unsigned long)got, (unsigned long)expect);
		expect++;
	}
	uint8_t verdict;
	if (read_full(s, &verdict, 1))
		fail("no verdict from the peer");
	if (verdict)
		fail("peer saw %s", verdict == 1 ? "a gap or repeat in our numbers" : "a reset or EOF");
	test_log("%lu numbers received, %lu sent", (unsigned long)expect, (unsigned long)out);
	pass();
}
