// jsforce as a Node job uses it with an HTTP proxy: `node query.js PROXY_URL INSTANCE_URL`.
// Prints the query result as JSON. tests/intercept.rs runs it through sfproxy.
const jsforce = require('jsforce');

const [httpProxy, instanceUrl] = process.argv.slice(2);
// Any token: sfproxy replaces it with the route's session.
const conn = new jsforce.Connection({ instanceUrl, accessToken: 'anything', httpProxy, version: '61.0' });
conn.query('SELECT Id, Name FROM Account').then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.error(String(error));
    process.exit(1);
  },
);
