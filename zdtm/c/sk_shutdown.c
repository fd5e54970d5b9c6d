/* sk_shutdown: sockets half or fully shut down (shutdown(2)) at dump time, each with data
 * queued before the shutdown:
 *   a unix stream pair whose first end shut its writing side (SHUT_WR),
 *   a unix seqpacket pair whose first end shut its reading side (SHUT_RD),
 *   a unix datagram pair, the first end shut for reading, the second for writing,
 *   a unix stream pair shut both ways (SHUT_RDWR) on one end,
 *   a connected UDP socket shut for writing, and one shut for reading.
 * With the argument "no-udp-queue" the UDP socket has nothing queued.
 * After restore each socket polls the same (POLLIN, POLLOUT, POLLRDHUP, POLLHUP), its
 * queued data reads back, a write on a side that is shut fails with EPIPE, and the
 * directions left open still carry new data. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MASK (POLLIN | POLLOUT | POLLRDHUP | POLLHUP | POLLERR)

struct sock {
	int fd;
	const char *what;
	int can_send; /* 1: a write goes through; 0: EPIPE */
	int peer;     /* where a write lands (-1: nowhere to check) */
	short events;
	char queued[64]; /* data queued for reading, "" if none */
};

static struct sock socks[16];
static int nsocks;

static short poll_mask(int fd)
{
	struct pollfd p = { .fd = fd, .events = MASK };
	if (poll(&p, 1, 0) < 0)
		fail("poll: %m");
	return p.revents & MASK;
}

static void add(int fd, const char *what, int can_send, int peer, const char *queued)
{
	struct sock *s = &socks[nsocks++];
	*s = (struct sock){ .fd = fd, .what = what, .can_send = can_send, .peer = peer };
	snprintf(s->queued, sizeof(s->queued), "%s", queued);
}

static void pair(int type, int sv[2])
{
	if (socketpair(AF_UNIX, type, 0, sv))
		fail("socketpair %d: %m", type);
}

static void sendtext(int fd, const char *text)
{
	if (send(fd, text, strlen(text), MSG_DONTWAIT) != (ssize_t)strlen(text))
		fail("send %s: %m", text);
}

static int udp_socket(struct sockaddr_in *self)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	socklen_t len = sizeof(*self);
	*self = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd < 0 || bind(fd, (struct sockaddr *)self, sizeof(*self)) || getsockname(fd, (struct sockaddr *)self, &len))
		fail("udp socket: %m");
	return fd;
}

int main(int argc, char **argv)
{
	test_init("sk_shutdown", argc, argv);
	uint64_t r = test_rand64();
	char a[32], b[32], c[32], d[32], e[32];
	snprintf(a, sizeof(a), "stream-%016llx", (unsigned long long)r);
	snprintf(b, sizeof(b), "seqpacket-%llx", (unsigned long long)(r >> 8));
	snprintf(c, sizeof(c), "dgram-%llx", (unsigned long long)(r >> 16));
	snprintf(d, sizeof(d), "both-%llx", (unsigned long long)(r >> 24));
	snprintf(e, sizeof(e), "udp-%llx", (unsigned long long)(r >> 32));

	int st[2], sq[2], dg[2], bo[2];
	pair(SOCK_STREAM, st);
	sendtext(st[0], a);
	if (shutdown(st[0], SHUT_WR))
		fail("shutdown stream: %m");
	add(st[0], "stream end that shut writing", 0, st[1], "");
	add(st[1], "stream end whose peer shut writing", 1, st[0], a);

	pair(SOCK_SEQPACKET, sq);
	sendtext(sq[1], b);
	if (shutdown(sq[0], SHUT_RD))
		fail("shutdown seqpacket: %m");
	add(sq[0], "seqpacket end that shut reading", 1, sq[1], b);
	add(sq[1], "seqpacket end whose peer shut reading", 0, sq[0], "");

	pair(SOCK_DGRAM, dg);
	sendtext(dg[1], c);
	if (shutdown(dg[0], SHUT_RD) || shutdown(dg[1], SHUT_WR))
		fail("shutdown dgram: %m");
	/* dg[0] may still send to dg[1], which shut writing only. */
	add(dg[0], "datagram end that shut reading", 1, dg[1], c);
	add(dg[1], "datagram end that shut writing", 0, dg[0], "");

	pair(SOCK_STREAM, bo);
	sendtext(bo[1], d);
	if (shutdown(bo[0], SHUT_RDWR))
		fail("shutdown both: %m");
	add(bo[0], "stream end shut both ways", 0, bo[1], d);
	add(bo[1], "stream end whose peer shut both ways", 0, bo[0], "");

	struct sockaddr_in self, other;
	int u = udp_socket(&self);
	int v = udp_socket(&other);
	if (connect(u, (struct sockaddr *)&other, sizeof(other)) || connect(v, (struct sockaddr *)&self, sizeof(self)))
		fail("udp connect: %m");
	/* "no-udp-queue": nothing queued on the UDP socket (CRIU keeps no UDP queue). */
	int udp_queue = !(argc > 1 && !strcmp(argv[1], "no-udp-queue"));
	if (udp_queue)
		sendtext(v, e);
	if (shutdown(u, SHUT_WR))
		fail("shutdown udp: %m");
	add(u, "udp socket that shut writing", 0, v, udp_queue ? e : "");
	/* v shut reading; it keeps sending. */
	if (shutdown(v, SHUT_RD))
		fail("shutdown udp rd: %m");
	add(v, "udp socket that shut reading", 1, u, "");

	for (int i = 0; i < nsocks; i++)
		socks[i].events = poll_mask(socks[i].fd);
	test_ready();
	test_waitsig();

	for (int i = 0; i < nsocks; i++) {
		struct sock *s = &socks[i];
		short now = poll_mask(s->fd);
		if (now != s->events)
			fail("%s: poll events %#x, were %#x", s->what, now, s->events);
	}
	for (int i = 0; i < nsocks; i++) {
		struct sock *s = &socks[i];
		char buf[128];
		if (s->queued[0]) {
			ssize_t n = recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n != (ssize_t)strlen(s->queued) || memcmp(buf, s->queued, n))
				fail("%s: queued %s came back as %zd bytes", s->what, s->queued, n);
		}
		char probe[32];
		snprintf(probe, sizeof(probe), "after-%d", i);
		ssize_t n = send(s->fd, probe, strlen(probe), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (!s->can_send) {
			if (n >= 0 || errno != EPIPE)
				fail("%s: a write after restore gave %zd (%m), not EPIPE", s->what, n);
			continue;
		}
		if (n != (ssize_t)strlen(probe))
			fail("%s: write after restore: %m", s->what);
		n = recv(s->peer, buf, sizeof(buf), MSG_DONTWAIT);
		if (n != (ssize_t)strlen(probe) || memcmp(buf, probe, n))
			fail("%s: the peer got %zd bytes of %s (%m)", s->what, n, probe);
	}
	pass();
}
