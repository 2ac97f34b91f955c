"""kubelite-dns: the cluster's DNS server. Services, their Endpoints and pod addresses by name
under the cluster domain, as the Kubernetes DNS specification defines them, answered from an
index that Service and Endpoints informers keep current; other names forwarded to the
upstream resolvers."""
