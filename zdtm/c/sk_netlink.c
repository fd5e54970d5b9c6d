/* sk_netlink: netlink sockets at dump time:
 *   a NETLINK_ROUTE socket bound to a random port id in the IPv6 prefix and DECnet route
 *     groups (the first 32, by bind) and in group 33 (RTNLGRP_BRVLAN, by
 *     NETLINK_ADD_MEMBERSHIP);
 *   a NETLINK_ROUTE socket the kernel gave a port id (bind with port id 0);
 *   two NETLINK_USERSOCK sockets, the second connected to the first's port id;
 *   an unbound NETLINK_ROUTE socket with a receive buffer of its own.
 * With the argument "low", the route socket is in no group above 32.
 * After restore each has its port id, groups (NETLINK_LIST_MEMBERSHIPS), peer and
 * buffer size; the route socket answers a RTM_GETLINK request, and a message sent on
 * the connected usersock socket reaches the first. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef NETLINK_LIST_MEMBERSHIPS
#define NETLINK_LIST_MEMBERSHIPS 9
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

struct nl {
	int fd;
	const char *what;
	struct sockaddr_nl name, peer;
	uint32_t groups[4];
	socklen_t groups_len;
	int rcvbuf;
};

static struct nl socks[8];
static int nsocks;

static void record(struct nl *n)
{
	socklen_t len = sizeof(n->name);
	memset(&n->name, 0, sizeof(n->name));
	memset(&n->peer, 0, sizeof(n->peer));
	memset(n->groups, 0, sizeof(n->groups));
	if (getsockname(n->fd, (struct sockaddr *)&n->name, &len))
		fail("%s: getsockname: %m", n->what);
	len = sizeof(n->peer);
	if (getpeername(n->fd, (struct sockaddr *)&n->peer, &len))
		fail("%s: getpeername: %m", n->what);
	n->groups_len = sizeof(n->groups);
	if (getsockopt(n->fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, n->groups, &n->groups_len))
		fail("%s: NETLINK_LIST_MEMBERSHIPS: %m", n->what);
	len = sizeof(n->rcvbuf);
	getsockopt(n->fd, SOL_SOCKET, SO_RCVBUF, &n->rcvbuf, &len);
}

static int make(int protocol, const char *what)
{
	int fd = socket(AF_NETLINK, SOCK_RAW, protocol);
	if (fd < 0)
		fail("%s: socket: %m", what);
	socks[nsocks] = (struct nl){ .fd = fd, .what = what };
	nsocks++;
	return fd;
}

static void bind_to(int fd, uint32_t port, uint32_t groups)
{
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_pid = port, .nl_groups = groups };
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)))
		fail("bind netlink port %u groups %#x: %m", port, groups);
}

int main(int argc, char **argv)
{
	test_init("sk_netlink", argc, argv);
	uint64_t r = test_rand64();
	uint32_t port = 0x40000000u | (uint32_t)(r & 0xfffffff);

	int route = make(NETLINK_ROUTE, "route socket bound to a port id and groups");
	/* Quiet groups: a notification queued at dump time would fail it. */
	bind_to(route, port, RTMGRP_IPV6_PREFIX | RTMGRP_DECnet_ROUTE);
	/* "low": no group above 32 (CRIU supports none). */
	int group = 33;
	if (!(argc > 1 && !strcmp(argv[1], "low")) && setsockopt(route, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)))
		fail("NETLINK_ADD_MEMBERSHIP 33: %m");
	int autobound = make(NETLINK_ROUTE, "route socket with a port id from the kernel");
	bind_to(autobound, 0, 0);
	int server = make(NETLINK_USERSOCK, "usersock socket");
	bind_to(server, port + 1, 0);
	int client = make(NETLINK_USERSOCK, "usersock socket connected to the other");
	bind_to(client, port + 2, 0);
	struct sockaddr_nl to = { .nl_family = AF_NETLINK, .nl_pid = port + 1 };
	if (connect(client, (struct sockaddr *)&to, sizeof(to)))
		fail("connect usersock: %m");
	int unbound = make(NETLINK_ROUTE, "unbound route socket");
	int rcvbuf = 40000 + (int)((r >> 32) % 10000);
	if (setsockopt(unbound, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)))
		fail("SO_RCVBUF: %m");
	for (int i = 0; i < nsocks; i++)
		record(&socks[i]);

	test_ready();
	test_waitsig();

	for (int i = 0; i < nsocks; i++) {
		struct nl before = socks[i];
		record(&socks[i]);
		struct nl *n = &socks[i];
		if (memcmp(&n->name, &before.name, sizeof(n->name)))
			fail("%s: port id %u groups %#x, were %u %#x", n->what, n->name.nl_pid, n->name.nl_groups, before.name.nl_pid, before.name.nl_groups);
		if (memcmp(&n->peer, &before.peer, sizeof(n->peer)))
			fail("%s: peer %u, was %u", n->what, n->peer.nl_pid, before.peer.nl_pid);
		if (n->groups_len != before.groups_len || memcmp(n->groups, before.groups, sizeof(n->groups)))
			fail("%s: group memberships changed (%#x %#x, were %#x %#x)", n->what, n->groups[0], n->groups[1], before.groups[0], before.groups[1]);
		if (n->rcvbuf != before.rcvbuf)
			fail("%s: SO_RCVBUF %d, was %d", n->what, n->rcvbuf, before.rcvbuf);
	}
	char text[32];
	snprintf(text, sizeof(text), "usersock-%016llx", (unsigned long long)r);
	char message[NLMSG_SPACE(sizeof(text))];
	struct nlmsghdr *h = (struct nlmsghdr *)message;
	memset(message, 0, sizeof(message));
	h->nlmsg_len = NLMSG_LENGTH(sizeof(text));
	h->nlmsg_type = NLMSG_MIN_TYPE;
	memcpy(NLMSG_DATA(h), text, sizeof(text));
	if (send(client, message, h->nlmsg_len, 0) != (ssize_t)h->nlmsg_len)
		fail("send on the usersock socket: %m");
	char buf[8192];
	ssize_t n = recv(server, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)h->nlmsg_len || memcmp(NLMSG_DATA((struct nlmsghdr *)buf), text, sizeof(text)))
		fail("usersock message: %zd bytes (%m)", n);

	struct {
		struct nlmsghdr h;
		struct rtgenmsg g;
	} request = { .h = { .nlmsg_len = sizeof(request), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = (uint32_t)r }, .g = { .rtgen_family = AF_UNSPEC } };
	if (send(route, &request, sizeof(request), 0) != sizeof(request))
		fail("RTM_GETLINK: %m");
	struct pollfd p = { .fd = route, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		fail("no answer to RTM_GETLINK");
	n = recv(route, buf, sizeof(buf), MSG_DONTWAIT);
	h = (struct nlmsghdr *)buf;
	if (n < (ssize_t)sizeof(*h) || h->nlmsg_seq != (uint32_t)r || h->nlmsg_pid != port)
		fail("RTM_GETLINK answer: %zd bytes, seq %u pid %u", n, n > 0 ? h->nlmsg_seq : 0, n > 0 ? h->nlmsg_pid : 0);
	pass();
}
