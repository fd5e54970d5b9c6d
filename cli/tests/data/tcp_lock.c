/* A process that holds an exclusive flock on argv[1] and an established TCP connection
 * to 127.0.0.1:argv[2], tells the test it is ready by writing its pid on fd 3 and
 * closing it, then answers each byte it reads on the connection with that byte plus
 * one, until the peer closes it (then it exits 0). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null);
    for (int fd = 4; fd < 1024; fd++) close(fd);
    int lock = open(argv[1], O_RDWR | O_CREAT, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) return 3;
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])) };
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(sock, (struct sockaddr *)&peer, sizeof(peer)) != 0) return 4;
    dprintf(3, "%d\n", getpid());
    close(3);
    char c;
    while (read(sock, &c, 1) == 1) {
        c++;
        if (write(sock, &c, 1) != 1) return 5;
    }
    return 0;
}
