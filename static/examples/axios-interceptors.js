// For HTTP clients that own their requests (axios and clients like it): attach the access token on
// the way out; on a 401 whose challenge says the token is invalid or expired, refresh once through
// the manager and replay the request. The manager's single flight means a burst of 401s costs one
// refresh, shared with every other tab.

/**
 * @param {{interceptors: {request: {use(f: (config: any) => any): unknown},
 *          response: {use(ok: (response: any) => any, failed: (error: any) => any): unknown}},
 *          request(config: any): Promise<any>}} client  an axios instance, or anything shaped like one
 * @param {import("../refresh-manager.js").RefreshManager} manager
 */
export function useRefreshManager(client, manager) {
  client.interceptors.request.use((config) => {
    const token = manager.accessToken;
    if (token) config.headers = { ...config.headers, Authorization: `Bearer ${token}` };
    return config;
  });
  client.interceptors.response.use(
    (response) => response,
    async (error) => {
      const response = error?.response;
      const challenge = String(response?.headers?.["www-authenticate"] ?? "");
      const config = error?.config;
      if (response?.status !== 401 || !/invalid_token/.test(challenge) || !config || config._retried) {
        throw error;
      }
      if (!(await manager.refresh())) throw error; // logged out: let the app show its login page
      return client.request({ ...config, _retried: true });
    },
  );
}
