"""ISO 4217 currency codes: a plan in an unknown currency is refused rather than invoiced in it.

The list is the active codes (plus XXX, ISO's "no currency", used on invoices of free plans). Amounts
are minor units of the currency; the price ceiling in plans.py is in minor units, whatever the
currency's exponent.
"""

from __future__ import annotations

_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP
STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG
XOF XPF YER ZAR ZMW ZWG
"""
ISO_4217 = frozenset(_CODES.split())

NO_CURRENCY = "XXX"


def normalise_currency(code: str) -> str:
    """Upper-case ISO code, or ValueError naming the bad one."""
    value = (code or "").strip().upper()
    if value not in ISO_4217:
        raise ValueError(f"unknown currency {code!r}: give an ISO 4217 code such as EUR or USD")
    return value
