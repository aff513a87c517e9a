// starlette-refresh demo: the sign-in form.
//
// POSTs {email, password} as JSON to /auth/login. The server answers 200 with an access token and sets
// the HttpOnly refresh cookie (Path=/auth) and, in page mode, the page cookies (Path=/); the dashboard
// restores the session from the refresh cookie with one refresh, so the access token in this answer is
// not needed here. Then it goes to the page named by ?next= (where the server sent a visitor without a
// session) when that is a path of this site, else to the dashboard.

// A path of this site: "/" first, but not "//" (another host) nor a backslash (which browsers read as
// "/"), nor a control character. Anything else is ignored, so this page is no open redirect.
function safeNext(value) {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//")) return null;
  if (value.includes("\\") || /[\u0000-\u001f\u007f]/.test(value)) return null;
  return value;
}

const nextPage = safeNext(new URLSearchParams(window.location.search).get("next")) ?? "/app";

const form = document.getElementById("login-form");
const errorBox = document.querySelector('[data-testid="login-error"]');
const submit = form.querySelector('button[type="submit"]');

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.textContent = "";
  errorBox.hidden = true;
}

async function signIn(email, password) {
  let response;
  try {
    response = await fetch("/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email, password }),
    });
  } catch {
    showError("Cannot reach the server. Check your connection and try again.");
    return;
  }
  if (response.ok) {
    window.location.href = nextPage;
    return;
  }
  if (response.status === 401) {
    showError("Wrong email or password");
  } else if (response.status === 503) {
    showError("The session store is unavailable right now. Try again in a moment.");
  } else if (response.status === 403) {
    showError("This sign-in was refused because it did not come from this site.");
  } else if (response.status === 429) {
    showError("Too many attempts. Wait a moment and try again.");
  } else {
    showError(`Sign-in failed (HTTP ${response.status}). Try again.`);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  const data = new FormData(form);
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  try {
    await signIn(String(data.get("email") ?? ""), String(data.get("password") ?? ""));
  } finally {
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
  }
});

form.addEventListener("input", () => {
  if (!errorBox.hidden) clearError();
});
