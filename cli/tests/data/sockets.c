/* sockets: holds one socket crust refuses to dump, by the mode in argv[1]:
 *   unix-backlog  a unix stream listener with a connection waiting for accept
 *   udp-cork      a UDP socket corked (UDP_CORK) with a datagram pending
 *   packet-ring   a packet socket with a PACKET_RX_RING mapped into memory
 *   dgram-outside a unix datagram socket connected to an unnamed one held by a process
 *                 outside its tree (a grandchild whose parent exited: it is the
 *                 caller's, a subreaper's, child now; its pid is written after "ready")
 *   ping          an ICMP ping socket (SOCK_DGRAM, IPPROTO_ICMP), in a network namespace
 *                 of its own whose net.ipv4.ping_group_range lets group 0 make one (the
 *                 machine's setting is left alone)
 * then writes "ready" on fd 3, closes it and sleeps in pause(). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	dprintf(3, "error %s: %m\n", what);
	exit(1);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "unix-backlog")) {
		struct sockaddr_un addr = { .sun_family = AF_UNIX };
		snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "crust-backlog-%d", getpid());
		socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1);
		int listener = socket(AF_UNIX, SOCK_STREAM, 0);
		if (listener < 0 || bind(listener, (struct sockaddr *)&addr, len) || listen(listener, 4))
			die("listen");
		int client = socket(AF_UNIX, SOCK_STREAM, 0);
		if (client < 0 || connect(client, (struct sockaddr *)&addr, len))
			die("connect");
	} else if (!strcmp(mode, "udp-cork")) {
		struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int one = 1, fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (fd < 0 || setsockopt(fd, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)) || sendto(fd, "pending", 7, 0, (struct sockaddr *)&lo, sizeof(lo)) != 7)
			die("cork");
	} else if (!strcmp(mode, "packet-ring")) {
		int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
		struct tpacket_req req = { .tp_block_size = 4096, .tp_block_nr = 4, .tp_frame_size = 2048, .tp_frame_nr = 8 };
		if (fd < 0 || setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)))
			die("PACKET_RX_RING");
		if (mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED)
			die("mmap the ring");
	} else if (!strcmp(mode, "ping")) {
		if (unshare(CLONE_NEWNET))
			die("unshare(CLONE_NEWNET)");
		FILE *range = fopen("/proc/sys/net/ipv4/ping_group_range", "w");
		if (!range || fprintf(range, "0 0\n") < 0 || fclose(range))
			die("ping_group_range");
		int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
		if (fd != 4)
			die("ping socket at fd 4");
	} else if (!strcmp(mode, "dgram-outside")) {
		int sv[2], report[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || pipe(report))
			die("socketpair");
		pid_t child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			pid_t grandchild = fork();
			if (grandchild == 0) {
				close(3);
				close(sv[0]);
				close(report[0]);
				close(report[1]);
				for (;;)
					pause();
			}
			dprintf(report[1], "%d", grandchild);
			_exit(0);
		}
		close(report[1]);
		char pid_text[16] = { 0 };
		if (read(report[0], pid_text, sizeof(pid_text) - 1) <= 0)
			die("read the grandchild's pid");
		close(report[0]);
		close(sv[1]);
		waitpid(child, NULL, 0);
		dprintf(3, "ready %s\n", pid_text);
		close(3);
		for (;;)
			pause();
	} else {
		dprintf(3, "error unknown mode %s\n", mode);
		return 2;
	}
	dprintf(3, "ready\n");
	close(3);
	for (;;)
		pause();
}
