/* sockopts: socket options with random values on three sockets; after restore every
 * option reads back as before:
 *   a TCP listener on loopback: SO_KEEPALIVE with TCP_KEEPCNT/KEEPIDLE/KEEPINTVL,
 *     SO_LINGER, SO_PRIORITY, SO_MARK, SO_RCVLOWAT, SO_SNDTIMEO, SO_RCVTIMEO, SO_SNDBUF
 *     (and with it SO_BUF_LOCK), SO_BINDTODEVICE lo, SO_REUSEADDR, SO_REUSEPORT,
 *     SO_OOBINLINE, IP_TOS, IP_TTL;
 *   a UDP socket with IP_FREEBIND bound to an address the machine does not have
 *     (192.0.2.77), SO_BROADCAST, IP_PKTINFO, and a classic BPF filter (SO_ATTACH_FILTER);
 *   a unix datagram pair with SO_PASSCRED and SO_RCVBUF on one end. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

struct opt {
	int fd;
	int level;
	int name;
	const char *what;
	int size;
	char before[32];
};

static struct opt opts[64];
static int nopts;

static void setint(int fd, int level, int name, const char *what, int value)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)))
		fail("set %s %d: %m", what, value);
}

static void watch(int fd, int level, int name, const char *what, int size)
{
	struct opt *o = &opts[nopts++];
	*o = (struct opt){ .fd = fd, .level = level, .name = name, .what = what, .size = size };
	socklen_t len = size;
	if (getsockopt(fd, level, name, o->before, &len))
		fail("get %s: %m", what);
	o->size = len;
}

static int check_all(void)
{
	for (int i = 0; i < nopts; i++) {
		struct opt *o = &opts[i];
		char after[32] = { 0 };
		socklen_t len = sizeof(after);
		if (getsockopt(o->fd, o->level, o->name, after, &len))
			fail("get %s after restore: %m", o->what);
		if ((int)len != o->size || memcmp(after, o->before, o->size)) {
			int was = 0, now = 0;
			memcpy(&was, o->before, sizeof(int));
			memcpy(&now, after, sizeof(int));
			fail("fd %d: %s changed (first word %d, was %d; %u bytes, were %d)", o->fd, o->what, now, was, len, o->size);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	test_init("sockopts", argc, argv);
	uint64_t r = test_rand64();

	int tcp = socket(AF_INET, SOCK_STREAM, 0);
	if (tcp < 0)
		fail("socket: %m");
	setint(tcp, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 1);
	setint(tcp, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 1);
	setint(tcp, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 1);
	setint(tcp, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", 1 + r % 20);
	setint(tcp, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", 10 + (r >> 5) % 1000);
	setint(tcp, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", 5 + (r >> 15) % 100);
	struct linger linger = { .l_onoff = 1, .l_linger = 1 + (r >> 22) % 30 };
	if (setsockopt(tcp, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)))
		fail("SO_LINGER: %m");
	setint(tcp, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", 1 + (r >> 27) % 6);
	setint(tcp, SOL_SOCKET, SO_MARK, "SO_MARK", 1 + (r >> 30) % 100000);
	setint(tcp, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", 2 + (r >> 40) % 100);
	struct timeval snd = { .tv_sec = 1 + (r >> 47) % 9, .tv_usec = 1000 * ((r >> 20) % 1000) };
	struct timeval rcv = { .tv_sec = 10 + (r >> 51) % 9, .tv_usec = 0 };
	if (setsockopt(tcp, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd)) || setsockopt(tcp, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv)))
		fail("SO_SNDTIMEO/SO_RCVTIMEO: %m");
	setint(tcp, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", 16384 + 4096 * ((r >> 55) % 8));
	if (setsockopt(tcp, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3))
		fail("SO_BINDTODEVICE lo: %m");
	setint(tcp, SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", 1);
	setint(tcp, IPPROTO_IP, IP_TOS, "IP_TOS", 0x10);
	setint(tcp, IPPROTO_IP, IP_TTL, "IP_TTL", 2 + (r >> 58) % 60);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(tcp, (struct sockaddr *)&addr, sizeof(addr)) || listen(tcp, 4))
		fail("bind/listen: %m");
	watch(tcp, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 4);
	watch(tcp, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 4);
	watch(tcp, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 4);
	watch(tcp, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", 4);
	watch(tcp, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", 4);
	watch(tcp, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", 4);
	watch(tcp, SOL_SOCKET, SO_LINGER, "SO_LINGER", sizeof(struct linger));
	watch(tcp, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", 4);
	watch(tcp, SOL_SOCKET, SO_MARK, "SO_MARK", 4);
	watch(tcp, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", 4);
	watch(tcp, SOL_SOCKET, SO_SNDTIMEO, "SO_SNDTIMEO", sizeof(struct timeval));
	watch(tcp, SOL_SOCKET, SO_RCVTIMEO, "SO_RCVTIMEO", sizeof(struct timeval));
	watch(tcp, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", 4);
	watch(tcp, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 4);
	watch(tcp, SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK", 4);
	watch(tcp, SOL_SOCKET, SO_BINDTODEVICE, "SO_BINDTODEVICE", 16);
	watch(tcp, SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", 4);
	watch(tcp, IPPROTO_IP, IP_TOS, "IP_TOS", 4);
	watch(tcp, IPPROTO_IP, IP_TTL, "IP_TTL", 4);

	int udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (udp < 0)
		fail("socket: %m");
	setint(udp, IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", 1);
	setint(udp, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", 1);
	setint(udp, IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", 1);
	/* Accept datagrams of up to N bytes whole, cut the others to N: ld len; jgt N; ret len; ret N. */
	unsigned cut = 64 + (r >> 12) % 1000;
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, cut, 1, 0),
		BPF_STMT(BPF_RET | BPF_A, 0),
		BPF_STMT(BPF_RET | BPF_K, cut),
	};
	struct sock_fprog program = { .len = 4, .filter = code };
	if (setsockopt(udp, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)))
		fail("SO_ATTACH_FILTER: %m");
	struct sockaddr_in gone = { .sin_family = AF_INET, .sin_port = htons(20000 + (r >> 33) % 20000) };
	inet_pton(AF_INET, "192.0.2.77", &gone.sin_addr);
	if (bind(udp, (struct sockaddr *)&gone, sizeof(gone)))
		fail("bind 192.0.2.77 with IP_FREEBIND: %m");
	watch(udp, IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", 4);
	watch(udp, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", 4);
	watch(udp, IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", 4);
	struct sockaddr_in bound;
	socklen_t bound_len = sizeof(bound);
	getsockname(udp, (struct sockaddr *)&bound, &bound_len);
	struct sock_filter got[8];
	socklen_t got_len = 8;
	if (getsockopt(udp, SOL_SOCKET, SO_GET_FILTER, got, &got_len) || got_len != 4)
		fail("SO_GET_FILTER: %m (%u instructions)", got_len);

	int unix_pair[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, unix_pair))
		fail("socketpair: %m");
	setint(unix_pair[0], SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", 1);
	setint(unix_pair[0], SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 8192 + 1024 * ((r >> 36) % 16));
	watch(unix_pair[0], SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", 4);
	watch(unix_pair[0], SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 4);
	watch(unix_pair[0], SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK", 4);
	watch(unix_pair[1], SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", 4);

	test_ready();
	test_waitsig();

	check_all();
	struct sockaddr_in now;
	socklen_t now_len = sizeof(now);
	getsockname(udp, (struct sockaddr *)&now, &now_len);
	if (now.sin_addr.s_addr != bound.sin_addr.s_addr || now.sin_port != bound.sin_port)
		fail("UDP socket bound to %#x:%d, was %#x:%d", now.sin_addr.s_addr, ntohs(now.sin_port), bound.sin_addr.s_addr,
		     ntohs(bound.sin_port));
	struct sock_filter after[8];
	socklen_t after_len = 8;
	if (getsockopt(udp, SOL_SOCKET, SO_GET_FILTER, after, &after_len))
		fail("SO_GET_FILTER after restore: %m");
	if (after_len != 4 || memcmp(after, got, sizeof(code)))
		fail("filter of %u instructions after restore, was 4", after_len);
	pass();
}
