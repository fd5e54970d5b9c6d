/* unix_unconnected: unix sockets that never connected at dump time: unbound stream,
 * datagram and seqpacket sockets, a stream socket bound to a path and a seqpacket socket
 * bound to an abstract name (neither listening), a datagram socket bound to a path, and
 * an unbound stream socket shut for reading. Each has a buffer size of its own. After
 * restore each has its type, name (none for the unbound ones), buffer size and shutdown
 * state, no peer, and works: the bound ones listen and accept, the unbound ones connect
 * to them and carry data, the datagram socket sends to the bound one. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct sock {
	int fd;
	int type;
	const char *what;
	struct sockaddr_un name;
	socklen_t name_len;
	int rcvbuf;
	short events;
};

static struct sock socks[8];
static int nsocks;

static short poll_mask(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP | POLLHUP };
	if (poll(&p, 1, 0) < 0)
		fail("poll: %m");
	return p.revents;
}

static int make(int type, const char *what, const struct sockaddr_un *bind_to, socklen_t len, int rcvbuf)
{
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0)
		fail("socket %s: %m", what);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)))
		fail("SO_RCVBUF %s: %m", what);
	if (bind_to && bind(fd, (const struct sockaddr *)bind_to, len))
		fail("bind %s: %m", what);
	struct sock *s = &socks[nsocks++];
	*s = (struct sock){ .fd = fd, .type = type, .what = what };
	s->name_len = sizeof(s->name);
	if (getsockname(fd, (struct sockaddr *)&s->name, &s->name_len))
		fail("getsockname %s: %m", what);
	socklen_t optlen = sizeof(s->rcvbuf);
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &s->rcvbuf, &optlen))
		fail("SO_RCVBUF %s: %m", what);
	return fd;
}

static void through(int from, int to, const char *what)
{
	char text[64], buf[64];
	snprintf(text, sizeof(text), "%s-%016llx", what, (unsigned long long)test_rand64());
	if (send(from, text, strlen(text), MSG_DONTWAIT) != (ssize_t)strlen(text))
		fail("%s: send: %m", what);
	ssize_t n = recv(to, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)strlen(text) || memcmp(buf, text, n))
		fail("%s: %zd bytes came through (%m)", what, n);
}

static int accept_one(int listener, const char *what)
{
	int fd = accept(listener, NULL, NULL);
	if (fd < 0)
		fail("%s: accept: %m", what);
	return fd;
}

int main(int argc, char **argv)
{
	test_init("unix_unconnected", argc, argv);
	uint64_t r = test_rand64();
	struct sockaddr_un path = { .sun_family = AF_UNIX }, dpath = { .sun_family = AF_UNIX }, abs = { .sun_family = AF_UNIX };
	test_path(path.sun_path, sizeof(path.sun_path), "bound-stream.sock");
	test_path(dpath.sun_path, sizeof(dpath.sun_path), "bound-dgram.sock");
	int abs_len = snprintf(abs.sun_path + 1, sizeof(abs.sun_path) - 1, "crust-unconnected-%016llx", (unsigned long long)r);
	socklen_t abs_size = offsetof(struct sockaddr_un, sun_path) + 1 + abs_len;
	int base = 20000 + (int)(r % 5000) * 4;

	int stream = make(SOCK_STREAM, "unbound stream", NULL, 0, base);
	int dgram = make(SOCK_DGRAM, "unbound datagram", NULL, 0, base + 1000);
	int seqpacket = make(SOCK_SEQPACKET, "unbound seqpacket", NULL, 0, base + 2000);
	int bound_stream = make(SOCK_STREAM, "stream bound to a path", &path, sizeof(path), base + 3000);
	int bound_seqpacket = make(SOCK_SEQPACKET, "seqpacket bound to an abstract name", &abs, abs_size, base + 4000);
	int bound_dgram = make(SOCK_DGRAM, "datagram bound to a path", &dpath, sizeof(dpath), base + 5000);
	int shut = make(SOCK_STREAM, "unbound stream shut for reading", NULL, 0, base + 6000);
	if (shutdown(shut, SHUT_RD))
		fail("shutdown: %m");
	for (int i = 0; i < nsocks; i++)
		socks[i].events = poll_mask(socks[i].fd);

	test_ready();
	test_waitsig();

	for (int i = 0; i < nsocks; i++) {
		struct sock *s = &socks[i];
		struct sockaddr_un name;
		socklen_t len = sizeof(name);
		int type = 0, rcvbuf = 0, listening = -1;
		socklen_t optlen = sizeof(int);
		if (getsockname(s->fd, (struct sockaddr *)&name, &len))
			fail("%s: getsockname: %m", s->what);
		if (len != s->name_len || memcmp(&name, &s->name, len))
			fail("%s: name changed (%u bytes, were %u)", s->what, len, s->name_len);
		getsockopt(s->fd, SOL_SOCKET, SO_TYPE, &type, &optlen);
		getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &optlen);
		getsockopt(s->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen);
		if (type != s->type || rcvbuf != s->rcvbuf || listening != 0)
			fail("%s: type %d rcvbuf %d listening %d, were %d %d 0", s->what, type, rcvbuf, listening, s->type, s->rcvbuf);
		if (getpeername(s->fd, (struct sockaddr *)&name, &len) == 0 || errno != ENOTCONN)
			fail("%s: has a peer after restore", s->what);
		short events = poll_mask(s->fd);
		if (events != s->events)
			fail("%s: poll events %#x, were %#x", s->what, events, s->events);
	}
	if (listen(bound_stream, 2) || listen(bound_seqpacket, 2))
		fail("listen: %m");
	if (connect(stream, (struct sockaddr *)&path, sizeof(path)))
		fail("connect the unbound stream socket: %m");
	int accepted = accept_one(bound_stream, "bound stream");
	through(stream, accepted, "stream");
	through(accepted, stream, "stream back");
	if (connect(seqpacket, (struct sockaddr *)&abs, abs_size))
		fail("connect the unbound seqpacket socket: %m");
	accepted = accept_one(bound_seqpacket, "bound seqpacket");
	through(seqpacket, accepted, "seqpacket");
	if (connect(dgram, (struct sockaddr *)&dpath, sizeof(dpath)))
		fail("connect the unbound datagram socket: %m");
	through(dgram, bound_dgram, "datagram");
	pass();
}
