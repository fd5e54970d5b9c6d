/* sk_raw_udplite: inet sockets of other protocols at dump time:
 *   a UDP-Lite socket bound to loopback with a datagram queued from a UDP-Lite sender
 *     connected to it (IPv4), and an IPv6 UDP-Lite socket shut for reading;
 *   a raw IPv4 socket of protocol 253 (experimental) bound to 127.0.0.1, and a raw
 *     socket of protocol 254 with IP_HDRINCL set.
 * With the argument "no-queue" nothing is queued on the UDP-Lite socket.
 * After restore: protocols, names, IP_HDRINCL as before; the queued datagram reads back
 * and the sender still reaches the bound socket; the raw socket receives a packet of
 * its protocol sent to 127.0.0.1 (with its IP header). Needs CAP_NET_RAW. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

struct sock {
	int fd;
	const char *what;
	struct sockaddr_storage name;
	socklen_t len;
	int protocol;
	int hdrincl;
	short events;
};

static struct sock socks[8];
static int nsocks;

static int intopt(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);
	if (getsockopt(fd, level, name, &value, &len))
		return -errno;
	return value;
}

static short poll_mask(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP | POLLHUP };
	poll(&p, 1, 0);
	return p.revents;
}

static void watch(int fd, const char *what)
{
	struct sock *s = &socks[nsocks++];
	*s = (struct sock){ .fd = fd, .what = what, .len = sizeof(s->name) };
	if (getsockname(fd, (struct sockaddr *)&s->name, &s->len))
		fail("%s: getsockname: %m", what);
	s->protocol = intopt(fd, SOL_SOCKET, SO_PROTOCOL);
	s->hdrincl = intopt(fd, IPPROTO_IP, IP_HDRINCL);
	s->events = poll_mask(fd);
}

int main(int argc, char **argv)
{
	test_init("sk_raw_udplite", argc, argv);
	uint64_t r = test_rand64();
	char text[40], again[40];
	snprintf(text, sizeof(text), "lite-%016llx", (unsigned long long)r);
	snprintf(again, sizeof(again), "again-%016llx", (unsigned long long)(r * 7));

	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(lo);
	int lite = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
	if (lite < 0)
		test_skip("no UDP-Lite here");
	if (bind(lite, (struct sockaddr *)&lo, sizeof(lo)) || getsockname(lite, (struct sockaddr *)&lo, &len))
		fail("bind UDP-Lite: %m");
	int sender = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
	if (sender < 0 || connect(sender, (struct sockaddr *)&lo, sizeof(lo)))
		fail("connect UDP-Lite: %m");
	/* "no-queue": nothing queued on the UDP-Lite socket (CRIU keeps no UDP queue). */
	int queue = !(argc > 1 && !strcmp(argv[1], "no-queue"));
	struct pollfd wait_for = { .fd = lite, .events = POLLIN };
	if (queue && send(sender, text, strlen(text), 0) != (ssize_t)strlen(text))
		fail("send UDP-Lite: %m");
	if (queue && poll(&wait_for, 1, 5000) != 1)
		fail("the UDP-Lite datagram did not arrive");
	watch(lite, "bound UDP-Lite socket");
	watch(sender, "connected UDP-Lite socket");
	int lite6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDPLITE);
	struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	if (lite6 < 0 || bind(lite6, (struct sockaddr *)&lo6, sizeof(lo6)))
		fail("bind UDP-Lite v6: %m");
	shutdown(lite6, SHUT_RD); /* unconnected: ENOTCONN, but shut all the same */
	watch(lite6, "IPv6 UDP-Lite socket shut for reading");

	int raw = socket(AF_INET, SOCK_RAW, 253);
	if (raw < 0)
		fail("raw socket: %m (needs CAP_NET_RAW)");
	struct sockaddr_in raw_addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(raw, (struct sockaddr *)&raw_addr, sizeof(raw_addr)))
		fail("bind raw: %m");
	watch(raw, "raw socket of protocol 253");
	int hdr = socket(AF_INET, SOCK_RAW, 254);
	int one = 1;
	if (hdr < 0 || setsockopt(hdr, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)))
		fail("raw socket with IP_HDRINCL: %m");
	watch(hdr, "raw socket with IP_HDRINCL");

	test_ready();
	test_waitsig();

	for (int i = 0; i < nsocks; i++) {
		struct sock *s = &socks[i];
		struct sockaddr_storage name;
		socklen_t nlen = sizeof(name);
		if (getsockname(s->fd, (struct sockaddr *)&name, &nlen) || nlen != s->len || memcmp(&name, &s->name, nlen))
			fail("%s: its name changed", s->what);
		int protocol = intopt(s->fd, SOL_SOCKET, SO_PROTOCOL), hdrincl = intopt(s->fd, IPPROTO_IP, IP_HDRINCL);
		if (protocol != s->protocol || hdrincl != s->hdrincl)
			fail("%s: protocol %d IP_HDRINCL %d, were %d %d", s->what, protocol, hdrincl, s->protocol, s->hdrincl);
		short events = poll_mask(s->fd);
		if (events != s->events)
			fail("%s: poll events %#x, were %#x", s->what, events, s->events);
	}
	char buf[256];
	ssize_t n = recv(lite, buf, sizeof(buf), MSG_DONTWAIT);
	if (queue && (n != (ssize_t)strlen(text) || memcmp(buf, text, n)))
		fail("queued UDP-Lite datagram: %zd bytes (%m)", n);
	if (send(sender, again, strlen(again), 0) != (ssize_t)strlen(again))
		fail("send UDP-Lite after restore: %m");
	if (poll(&wait_for, 1, 5000) != 1 || recv(lite, buf, sizeof(buf), MSG_DONTWAIT) != (ssize_t)strlen(again) || memcmp(buf, again, strlen(again)))
		fail("UDP-Lite datagram after restore did not arrive");

	if (sendto(raw, again, strlen(again), 0, (struct sockaddr *)&raw_addr, sizeof(raw_addr)) != (ssize_t)strlen(again))
		fail("raw send: %m");
	struct pollfd raw_wait = { .fd = raw, .events = POLLIN };
	if (poll(&raw_wait, 1, 5000) != 1)
		fail("no packet of protocol 253 reached the raw socket");
	n = recv(raw, buf, sizeof(buf), MSG_DONTWAIT);
	struct iphdr *ip = (struct iphdr *)buf;
	if (n < (ssize_t)sizeof(*ip) || ip->protocol != 253 || n - ip->ihl * 4 != (ssize_t)strlen(again) || memcmp(buf + ip->ihl * 4, again, strlen(again)))
		fail("raw socket: got %zd bytes, not the packet sent", n);
	pass();
}
