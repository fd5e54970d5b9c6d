/* sk_packet: packet sockets (AF_PACKET) at dump time:
 *   a SOCK_DGRAM socket bound to the loopback interface for ethertype 0x88b5 (local
 *     experimental), with PACKET_AUXDATA, PACKET_ORIGDEV, a random PACKET_RESERVE and
 *     a multicast membership added twice on lo;
 *   a SOCK_RAW socket for every protocol (ETH_P_ALL), unbound, with PACKET_VERSION
 *     TPACKET_V2 and PACKET_LOSS, in a fanout group of random id;
 *   a SOCK_DGRAM sender bound to lo.
 * After restore each socket has its type, protocol, interface, options and fanout
 * (getsockopt), its membership twice (lo stays in the group after one
 * PACKET_DROP_MEMBERSHIP, leaves it after the second), and a frame of ethertype 0x88b5 sent on lo by the sender reaches the bound
 * socket with its payload. With the argument "single" the membership is added once.
 * Needs CAP_NET_RAW. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ETHERTYPE 0x88b5

struct opt {
	int fd, name;
	const char *what;
	int before;
};

static struct opt opts[32];
static int nopts;

static int get(int fd, int level, int name)
{
	int value = -1;
	socklen_t len = sizeof(value);
	if (getsockopt(fd, level, name, &value, &len))
		return -errno;
	return value;
}

static void watch(int fd, int name, const char *what)
{
	opts[nopts++] = (struct opt){ .fd = fd, .name = name, .what = what, .before = get(fd, SOL_PACKET, name) };
}

static void setint(int fd, int name, int value, const char *what)
{
	if (setsockopt(fd, SOL_PACKET, name, &value, sizeof(value)))
		fail("%s %d: %m", what, value);
}

static struct packet_mreq membership(int lo)
{
	struct packet_mreq mreq = { .mr_ifindex = lo, .mr_type = PACKET_MR_MULTICAST, .mr_alen = 6 };
	unsigned char group[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x77 };
	memcpy(mreq.mr_address, group, 6);
	return mreq;
}

/* Whether /proc/net/dev_mcast lists lo in the group 01:00:5e:00:00:77. */
static int lo_has_group(void)
{
	FILE *f = fopen("/proc/net/dev_mcast", "r");
	char line[256];
	int found = 0;
	if (!f)
		fail("open /proc/net/dev_mcast: %m");
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " lo ") && strstr(line, "01005e000077"))
			found = 1;
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	test_init("sk_packet", argc, argv);
	uint64_t r = test_rand64();
	int lo = if_nametoindex("lo");
	if (!lo)
		fail("no lo: %m");
	int bound = socket(AF_PACKET, SOCK_DGRAM, htons(ETHERTYPE));
	int all = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	int sender = socket(AF_PACKET, SOCK_DGRAM, htons(ETHERTYPE));
	if (bound < 0 || all < 0 || sender < 0)
		fail("packet socket: %m (needs CAP_NET_RAW)");
	setint(bound, PACKET_AUXDATA, 1, "PACKET_AUXDATA");
	setint(bound, PACKET_ORIGDEV, 1, "PACKET_ORIGDEV");
	setint(bound, PACKET_RESERVE, 16 + (int)(r % 64), "PACKET_RESERVE");
	struct sockaddr_ll at = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE), .sll_ifindex = lo };
	if (bind(bound, (struct sockaddr *)&at, sizeof(at)) || bind(sender, (struct sockaddr *)&at, sizeof(at)))
		fail("bind to lo: %m");
	/* "single": the membership is added once (CRIU dumps no membership held twice). */
	int times = argc > 1 && !strcmp(argv[1], "single") ? 1 : 2;
	struct packet_mreq mreq = membership(lo);
	for (int i = 0; i < times; i++)
		if (setsockopt(bound, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)))
			fail("PACKET_ADD_MEMBERSHIP: %m");
	setint(all, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION");
	setint(all, PACKET_LOSS, 1, "PACKET_LOSS");
	int fanout = (int)((r >> 16) & 0xffff) | (PACKET_FANOUT_HASH << 16);
	setint(all, PACKET_FANOUT, fanout, "PACKET_FANOUT");

	watch(bound, PACKET_AUXDATA, "PACKET_AUXDATA");
	watch(bound, PACKET_ORIGDEV, "PACKET_ORIGDEV");
	watch(bound, PACKET_RESERVE, "PACKET_RESERVE");
	watch(bound, PACKET_VERSION, "PACKET_VERSION");
	watch(all, PACKET_VERSION, "PACKET_VERSION");
	watch(all, PACKET_LOSS, "PACKET_LOSS");
	watch(all, PACKET_FANOUT, "PACKET_FANOUT");
	watch(all, PACKET_AUXDATA, "PACKET_AUXDATA");
	struct sockaddr_ll names[3];
	int fds[3] = { bound, all, sender }, types[3], protocols[3];
	for (int i = 0; i < 3; i++) {
		socklen_t len = sizeof(names[i]);
		memset(&names[i], 0, sizeof(names[i]));
		getsockname(fds[i], (struct sockaddr *)&names[i], &len);
		types[i] = get(fds[i], SOL_SOCKET, SO_TYPE);
		protocols[i] = get(fds[i], SOL_SOCKET, SO_PROTOCOL);
	}

	test_ready();
	test_waitsig();

	for (int i = 0; i < nopts; i++) {
		int now = get(opts[i].fd, SOL_PACKET, opts[i].name);
		if (now != opts[i].before)
			fail("fd %d: %s is %d, was %d", opts[i].fd, opts[i].what, now, opts[i].before);
	}
	for (int i = 0; i < 3; i++) {
		struct sockaddr_ll name;
		socklen_t len = sizeof(name);
		memset(&name, 0, sizeof(name));
		getsockname(fds[i], (struct sockaddr *)&name, &len);
		if (name.sll_ifindex != names[i].sll_ifindex || name.sll_protocol != names[i].sll_protocol)
			fail("socket %d: interface %d protocol %#x, were %d %#x", i, name.sll_ifindex, ntohs(name.sll_protocol), names[i].sll_ifindex, ntohs(names[i].sll_protocol));
		if (get(fds[i], SOL_SOCKET, SO_TYPE) != types[i] || get(fds[i], SOL_SOCKET, SO_PROTOCOL) != protocols[i])
			fail("socket %d: type or protocol changed", i);
	}
	/* Added `times` times: lo keeps the group until as many drops. */
	for (int i = 0; i < times; i++) {
		if (!lo_has_group())
			fail("lo is not in the group after %d of %d drops: the membership was not there %d times", i, times, times);
		if (setsockopt(bound, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &mreq, sizeof(mreq)))
			fail("PACKET_DROP_MEMBERSHIP: %m");
	}
	if (lo_has_group())
		fail("lo is still in the group after %d drops: the membership was there more than %d times", times, times);
	/* Drain what came meanwhile, then send one frame to lo. */
	char buf[2048];
	while (recv(bound, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	char text[40];
	snprintf(text, sizeof(text), "packet-%016llx", (unsigned long long)r);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE), .sll_ifindex = lo, .sll_halen = 6 };
	if (sendto(sender, text, strlen(text), 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)strlen(text))
		fail("send on lo: %m");
	for (;;) {
		struct pollfd p = { .fd = bound, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			fail("the frame sent on lo did not reach the bound packet socket");
		ssize_t n = recv(bound, buf, sizeof(buf), MSG_DONTWAIT);
		if (n >= (ssize_t)strlen(text) && !memcmp(buf, text, strlen(text)))
			break;
	}
	pass();
}
