package server

import (
	"fmt"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apiserver/pkg/storage/storagebackend"
)

// newEtcdClient connects to the etcd the objects are stored in, with the same
// endpoints and TLS files as the generic storage (--etcd-servers, --etcd-cafile,
// --etcd-certfile, --etcd-keyfile), for what the generic storage cannot do:
// multi-key transactions such as the Hardware identity index.
func newEtcdClient(tc storagebackend.TransportConfig) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: tc.ServerList, DialTimeout: 20 * time.Second, DialKeepAliveTime: 30 * time.Second}
	if tc.CertFile != "" || tc.KeyFile != "" || tc.TrustedCAFile != "" {
		tlsConfig, err := (transport.TLSInfo{CertFile: tc.CertFile, KeyFile: tc.KeyFile, TrustedCAFile: tc.TrustedCAFile}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
		cfg.TLS = tlsConfig
	}
	client, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd %v: %w", tc.ServerList, err)
	}
	return client, nil
}
